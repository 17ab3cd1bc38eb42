"""Plain and residual blocks (He et al. 2016), taught in Chapters 1, 2 and 4.

A block computes a residual branch F(x) (conv-BN-ReLU-conv-BN) and then, depending on
``shortcut``:

* ``"identity"`` (option A): out = relu(F(x) + x); where the shape changes, x is subsampled
  and zero-padded with new channels, so the shortcut has no parameters;
* ``"projection"`` (option B): like A, but where the shape changes the shortcut is a strided
  1x1 convolution + BN;
* ``"projection_all"`` (option C): every shortcut is a 1x1 convolution + BN, even where the
  shapes already match (Chapter 4 compares A, B and C);
* ``"none"``: out = relu(F(x)), the *plain* block with exactly the same parameters as option A.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SHORTCUTS = ("identity", "projection", "none", "projection_all")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (the BN after it has one)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias, used by projection shortcuts."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class PadShortcut(nn.Module):
    """Option A: subsample by ``stride`` and append zero channels up to ``out_channels``.

    Parameter-free: the shortcut can only ever be the identity on the old channels.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(
                f"zero-padding shortcut cannot reduce channels ({in_channels} -> {out_channels}); "
                "use shortcut='projection'"
            )
        self.extra_channels = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        # pad spec runs from the last dim backwards: (W, W, H, H, C_front, C_back)
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


def check_shortcut(shortcut: str) -> str:
    """Return ``shortcut`` if it is a known option, else raise a ValueError naming the options."""
    if shortcut not in SHORTCUTS:
        raise ValueError(f"unknown shortcut {shortcut!r}: allowed values are {', '.join(map(repr, SHORTCUTS))}")
    return shortcut


def make_shortcut(shortcut: str, in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    """The module that maps x to the block's output shape, or None for a parameter-free identity.

    Returns None both when shapes already match (options A and B add x itself) and for
    ``"none"`` (the plain block adds nothing); option C (``"projection_all"``) always projects.
    """
    check_shortcut(shortcut)
    if shortcut == "none" or (shortcut != "projection_all" and stride == 1 and in_channels == out_channels):
        return None
    if shortcut == "identity":
        return PadShortcut(in_channels, out_channels, stride)
    return nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))


def he_init_(model: nn.Module) -> nn.Module:
    """He et al.'s initialisation, used by every ResNet of the course: conv weights
    N(0, 2/fan_out), BN scale 1 and shift 0. Returns ``model``."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a shortcut (Chapter 1; the residual block of Chapter 4).

    Attribute names follow torchvision (``conv1``, ``bn1``, ``conv2``, ``bn2``, ``downsample``)
    so that checkpoints interchange.
    """

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, shortcut: str = "identity") -> None:
        super().__init__()
        self.shortcut = check_shortcut(shortcut)
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()  # not in-place: probes hook the BN outputs
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = make_shortcut(shortcut, in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.shortcut != "none":
            identity = x if self.downsample is None else self.downsample(x)
            out = out + identity  # not in-place: hooks may hold `out`
        return self.relu(out)

    @torch.no_grad()
    def zero_init_last(self) -> None:
        """Set the last BN's scale to zero (Goyal et al. 2017).

        A residual block then computes exactly relu(shortcut(x)) at initialisation; a plain
        block computes the zero map, which is the contrast Chapter 2 shows.
        """
        nn.init.zeros_(self.bn2.weight)
