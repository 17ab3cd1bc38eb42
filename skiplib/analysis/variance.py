"""Why residual stacks need normalisation or a careful initialisation (Chapter 2): the size of the
signal after every block of a deep residual stack at initialisation, and the initialisations that
keep it flat.

A residual block adds its branch to its input, so the signal's second moment after block l is the
input's plus the branch's (the two are uncorrelated over random weights). Without normalisation a
He-initialised branch is as large as its input or larger, and the signal grows geometrically with
depth; with batch norm ending the branch it adds about 1 per block, a linear growth; a branch that
starts at zero (zero-γ, SkipInit, ReZero, Fixup) keeps it flat.

:class:`NormFreeBlock` is the course's residual block without batch norm, with Fixup's scalar
biases and multiplier; :func:`fixup_init_` and :func:`skipinit_` initialise a stack of them;
:func:`variance_profile` measures a stack of any :data:`KINDS`; :func:`norm_free_resnet` builds a
CIFAR ResNet of these blocks for training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from skiplib.blocks import BasicBlock, conv3x3, he_init_, make_shortcut
from skiplib.checks import check_positive_ints
from skiplib.models import CifarResNet

# kind -> what its branch is at initialisation (the legend of Chapter 2's figure)
KINDS: dict[str, str] = {
    "he": "no normalisation, He init",
    "bn": "batch norm in the branch (BasicBlock)",
    "fixup_scale": "no normalisation, Fixup's rescaling only (last conv kept)",
    "zero_gamma": "batch norm, zero-γ (last BN scale 0)",
    "skipinit": "no normalisation, SkipInit / ReZero (α = 0)",
    "fixup": "no normalisation, Fixup (rescaled, last conv 0)",
}
INITS = ("he", "skipinit", "fixup")  # the initialisations of norm_free_resnet


class NormFreeBlock(nn.Module):
    """A residual block without batch norm (Chapter 2): relu(shortcut(x) + scale * F(x) + bias2b)
    with F(x) = conv2(relu(conv1(x + bias1a) + bias1b) + bias2a).

    The scalar biases (0) and the multiplier ``scale`` (1) are Fixup's (Zhang et al. 2019); they
    stand in for what batch norm's shift and scale would learn. With ``scale = 0`` it is SkipInit's
    block (De & Smith 2020), which is ReZero's at initialisation. The shortcut is option A.
    """

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        check_positive_ints(in_channels=in_channels, out_channels=out_channels, stride=stride)
        self.bias1a = nn.Parameter(torch.zeros(1))
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bias1b = nn.Parameter(torch.zeros(1))
        self.relu = nn.ReLU()
        self.bias2a = nn.Parameter(torch.zeros(1))
        self.conv2 = conv3x3(out_channels, out_channels)
        self.scale = nn.Parameter(torch.ones(1))
        self.bias2b = nn.Parameter(torch.zeros(1))
        self.downsample = make_shortcut("identity", in_channels, out_channels, stride)
        he_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x + self.bias1a)
        out = self.relu(out + self.bias1b)
        out = self.conv2(out + self.bias2a)
        out = out * self.scale + self.bias2b
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)

    @torch.no_grad()
    def zero_init_last(self) -> None:
        """Zero the last conv (Fixup's rule): the block then computes relu(shortcut(x))."""
        nn.init.zeros_(self.conv2.weight)


def _norm_free_blocks(blocks: Sequence[nn.Module]) -> list[NormFreeBlock]:
    blocks = list(blocks)
    if not blocks or not all(isinstance(b, NormFreeBlock) for b in blocks):
        raise ValueError("expected a non-empty sequence of NormFreeBlock, got "
                         f"{sorted({type(b).__name__ for b in blocks}) or 'nothing'}")
    return blocks


@torch.no_grad()
def fixup_init_(blocks: Sequence[nn.Module], *, zero_last: bool = True) -> list[NormFreeBlock]:
    """Fixup's rescaling (Zhang et al. 2019) of ``L = len(blocks)`` He-initialised residual branches
    of m = 2 convs, in place: conv1 times L^(-1/(2m-2)) = L^(-1/2), conv2 zero (``zero_last``).
    With ``zero_last=False`` only the rescaling, which Chapter 2 shows bounds the growth by itself."""
    blocks = _norm_free_blocks(blocks)
    factor = len(blocks) ** -0.5
    for b in blocks:
        b.conv1.weight.mul_(factor)
        if zero_last:
            b.zero_init_last()
    return blocks


@torch.no_grad()
def skipinit_(blocks: Sequence[nn.Module]) -> list[NormFreeBlock]:
    """SkipInit (De & Smith 2020): every branch's scalar multiplier starts at 0, in place."""
    blocks = _norm_free_blocks(blocks)
    for b in blocks:
        b.scale.zero_()
    return blocks


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: allowed are {', '.join(map(repr, KINDS))}")


def residual_stack(kind: str, depth: int, width: int = 16, *, seed: int = 0) -> nn.Sequential:
    """``depth`` same-width residual blocks of the given :data:`KINDS`, initialised from ``seed``."""
    _check_kind(kind)
    check_positive_ints(depth=depth, width=width)
    torch.manual_seed(seed)
    if kind in ("bn", "zero_gamma"):
        stack = nn.Sequential(*(BasicBlock(width, width) for _ in range(depth)))
        he_init_(stack)
        if kind == "zero_gamma":
            for b in stack:
                b.zero_init_last()
        return stack
    stack = nn.Sequential(*(NormFreeBlock(width, width) for _ in range(depth)))
    if kind == "skipinit":
        skipinit_(stack)
    elif kind in ("fixup", "fixup_scale"):
        fixup_init_(stack, zero_last=kind == "fixup")
    return stack


def _mean_square(h: torch.Tensor) -> float:
    # per channel, then averaged; squared in float64: a float32 signal of size 1e20 is fine, its square is not
    return h.double().pow(2).mean(dim=(0, 2, 3)).mean().item()


@torch.no_grad()
def block_mean_squares(stack: nn.Sequential, x: torch.Tensor) -> list[float]:
    """The mean square of ``x`` and of the output of every block of ``stack`` (per channel, then
    averaged over channels). Raises a ValueError if the signal overflows the stack's float type.

    The stack runs in training mode, as SGD sees it: its batch norms normalise by the batch's
    statistics (at initialisation the stored ones are 0 and 1, and would normalise nothing)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a batch of feature maps (N, C, H, W), got {getattr(x, 'shape', type(x))}")
    if x.shape[0] < 2:
        raise ValueError(f"x needs at least 2 images (batch norm in training mode), got {x.shape[0]}")
    was_training = stack.training
    stack.train()
    h, out = x, [_mean_square(x)]
    try:
        for i, block in enumerate(stack, 1):
            h = block(h)
            out.append(_mean_square(h))
            if not math.isfinite(out[-1]):
                raise ValueError(f"the signal overflowed {h.dtype} after block {i} (mean square {out[-2]:.3g} "
                                 "before it): use fewer blocks, or run the stack in float64 (stack.double())")
    finally:
        stack.train(was_training)  # hand the stack back as it came
    return out


def variance_profile(kind: str, images: torch.Tensor, depth: int, width: int = 16, *, seed: int = 0) -> np.ndarray:
    """Chapter 2's measurement: ``images`` through a He-initialised conv3x3-ReLU stem (scaled to mean
    square 1), then ``depth`` blocks of ``kind``; the mean square after the stem and after each block
    (``depth + 1`` values, the first 1). Float32 on the CPU; running statistics are left untouched."""
    _check_kind(kind)
    check_positive_ints(depth=depth, width=width)
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a batch (N, C, H, W), got {getattr(images, 'shape', type(images))}")
    torch.manual_seed(seed + 10_000)  # the stem: the same for every kind
    stem = he_init_(nn.Sequential(conv3x3(images.shape[1], width), nn.ReLU()))
    with torch.no_grad():
        x = stem(images.float().cpu())
        x = x / x.pow(2).mean().sqrt()
    stack = residual_stack(kind, depth, width, seed=seed)
    for m in stack.modules():  # measuring must not move the running statistics
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.0
    return np.asarray(block_mean_squares(stack, x))


def growth_factor(profile: Sequence[float]) -> float:
    """The factor per block of a geometric fit, exp(slope of log mean square against block index)."""
    v = np.asarray(profile, dtype=float)
    if v.ndim != 1 or len(v) < 2 or not np.all(np.isfinite(v)) or not np.all(v > 0):
        raise ValueError(f"profile must be at least 2 positive finite numbers, got {v!r}")
    return float(math.exp(np.polyfit(np.arange(len(v)), np.log(v), 1)[0]))


def norm_free_resnet(depth: int, init: str = "fixup", **kwargs) -> CifarResNet:
    """A CIFAR ResNet (Chapter 1's layout) of :class:`NormFreeBlock` and no batch norm anywhere,
    initialised by ``init``: "he" (as it comes), "skipinit", or "fixup" (which also zeroes the
    classifier, as Zhang et al. do)."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}: allowed are {', '.join(map(repr, INITS))}")
    net = CifarResNet(depth, block=NormFreeBlock, **kwargs)
    net.bn1 = nn.Identity()  # the stem's batch norm too: this net has none
    if init == "skipinit":
        skipinit_(net.blocks())
    elif init == "fixup":
        fixup_init_(net.blocks())
        with torch.no_grad():
            net.fc.weight.zero_()
            net.fc.bias.zero_()
    return net
