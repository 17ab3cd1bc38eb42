"""U-Net parts (Ronneberger et al. 2015), taught in Chapter 6: ``DoubleConv``, ``Down``, ``Up``, ``OutConv``.

Convolutions are 3x3 with padding 1, so a ``DoubleConv`` keeps the spatial size (the paper used
unpadded convolutions and cropped the skips; padding keeps input and output sizes equal). ``Up``
upsamples the decoder's map, pads it to the skip's size when the input size was not divisible by
2**depth (max-pooling floored an odd size on the way down), concatenates ``[skip, upsampled]``
(skip first) and applies a ``DoubleConv``. An ``Up`` built with ``skip=False`` uses the skip
tensor only for its spatial size: no information flows along the long skip, and its
``DoubleConv`` sees only the upsampled channels.

Chapter 6's control separates what a skip carries forward from the gradient path it opens back to
the encoder. ``skip`` takes one of :data:`SKIP_MODES` (``True`` is ``"full"``, ``False`` is
``"none"``): ``"detached"`` concatenates the skip's value but stops its gradient (``x2.detach()``);
``"gradient_only"`` concatenates ``x2 - x2.detach()``, exactly zero in the forward pass, while the
backward pass sends the encoder the gradient an identity would (the same gradient as a full skip
fed zeros). Both keep the ``2c`` input channels, so they have the full ``Up``'s parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from skiplib.checks import check_positive_ints

# what a long skip carries (Chapter 6): value and gradient, value only, gradient only, nothing
SKIP_MODES = ("full", "detached", "gradient_only", "none")


def skip_mode(skip: bool | str) -> str:
    """The mode of :data:`SKIP_MODES` that ``skip`` names: ``True`` -> ``"full"``, ``False`` -> ``"none"``,
    a mode string -> itself. Chapter 6."""
    if isinstance(skip, bool):
        return "full" if skip else "none"
    if isinstance(skip, str) and skip in SKIP_MODES:
        return skip
    raise ValueError(f"a skip is True, False or one of {', '.join(map(repr, SKIP_MODES))}; got {skip!r}")


class DoubleConv(nn.Module):
    """(conv 3x3 → [BN] → ReLU) twice; keeps the spatial size. ``bias=None`` means "bias only
    without BN" (a bias before BN is cancelled by BN's mean subtraction). Chapter 6."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None, *,
                 batch_norm: bool = False, bias: bool | None = None, residual: bool = False) -> None:
        super().__init__()
        mid_channels = out_channels if mid_channels is None else mid_channels
        check_positive_ints(in_channels=in_channels, out_channels=out_channels, mid_channels=mid_channels)
        bias = not batch_norm if bias is None else bias
        norm = (lambda c: nn.BatchNorm2d(c)) if batch_norm else (lambda c: nn.Identity())  # noqa: E731
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1, bias=bias),
            norm(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=bias),
            norm(out_channels),
            nn.ReLU(inplace=True),
        )
        # residual=True (Chapter 7): a short skip around the two convolutions,
        # relu(F(x) + P x), with P the identity or a 1x1 projection when the width changes
        self.residual = residual
        if residual:
            self.double_conv = self.double_conv[:-1]  # the ReLU moves after the addition
            self.shortcut = (nn.Identity() if in_channels == out_channels else
                             nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=bias), norm(out_channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.residual:
            return F.relu(self.double_conv(x) + self.shortcut(x))
        return self.double_conv(x)


class Down(nn.Module):
    """2x2 max-pool (halves the size, flooring odd sizes) then ``DoubleConv``. Chapter 6."""

    def __init__(self, in_channels: int, out_channels: int, *, batch_norm: bool = False,
                 bias: bool | None = None, residual: bool = False) -> None:
        super().__init__()
        self.maxpool_conv = nn.Sequential(
            nn.MaxPool2d(2),
            DoubleConv(in_channels, out_channels, batch_norm=batch_norm, bias=bias, residual=residual),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


def pad_to(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Zero-pad ``x`` [N, C, H, W] to spatial ``size``: half of the missing rows/columns before,
    the rest after (so a one-pixel difference goes to the bottom/right). Chapter 6."""
    dh, dw = size[0] - x.shape[-2], size[1] - x.shape[-1]
    if dh < 0 or dw < 0:
        raise ValueError(f"cannot pad a {tuple(x.shape[-2:])} map to the smaller size {tuple(size)}")
    if dh == 0 and dw == 0:
        return x
    return F.pad(x, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])


class Up(nn.Module):
    """Upsample ×2 (transposed conv, or bilinear + 1x1 conv) from ``in_channels`` to
    ``in_channels // 2``, pad to the skip's size, concatenate ``[skip, upsampled]`` and apply
    ``DoubleConv(in_channels, out_channels)``. The skip must have ``in_channels // 2`` channels.

    With ``skip=False`` (``"none"``) the ``DoubleConv`` takes only the ``in_channels // 2`` upsampled
    channels and ``forward`` reads nothing from ``x2`` but its height and width. ``"detached"`` and
    ``"gradient_only"`` (see the module docstring) keep the full ``DoubleConv``. Chapter 6."""

    def __init__(self, in_channels: int, out_channels: int, *, bilinear: bool = False, batch_norm: bool = False,
                 bias: bool | None = None, skip: bool | str = True) -> None:
        super().__init__()
        check_positive_ints(in_channels=in_channels)
        if in_channels % 2:
            raise ValueError(f"Up halves the channels when upsampling, so in_channels must be even, got {in_channels}")
        half = in_channels // 2
        if bilinear:  # the paper's "up-convolution" reading: upsample, then a conv that halves the channels
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                    nn.Conv2d(in_channels, half, kernel_size=1))
        else:
            self.up = nn.ConvTranspose2d(in_channels, half, kernel_size=2, stride=2)
        self.skip_mode = skip_mode(skip)
        self.skip = self.skip_mode != "none"  # whether the skip's channels are concatenated at all
        self.conv = DoubleConv(in_channels if self.skip else half, out_channels, batch_norm=batch_norm, bias=bias)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """``x1``: the decoder's map from the level below; ``x2``: the encoder's map (the skip)."""
        x1 = self.up(x1)
        x1 = pad_to(x1, x2.shape[-2:])
        if self.skip_mode == "detached":
            x2 = x2.detach()  # the value goes forward, no gradient comes back along the skip
        elif self.skip_mode == "gradient_only":
            x2 = x2 - x2.detach()  # exactly 0 forward; backward, d/dx2 is the identity
        if self.skip:
            x1 = torch.cat([x2, x1], dim=1)  # skip first, as in milesial's Pytorch-UNet
        return self.conv(x1)

    def extra_repr(self) -> str:
        return f"skip={self.skip}" if self.skip_mode in ("full", "none") else f"skip={self.skip_mode!r}"


class OutConv(nn.Module):
    """1x1 convolution to one logit per class. Chapter 6."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
