"""U-Net (Ronneberger et al. 2015) with switchable long skips, taught in Chapter 6.

``UNet()`` with its defaults is the paper's configuration: 1 input channel, 2 classes, base
width 64, 4 down-steps (64-128-256-512-1024 channels), transposed-convolution upsampling, no
batch norm, biases: 31,030,658 parameters (with padded convolutions; the paper's were unpadded,
which changes sizes, not parameters).

``skips`` switches the long encoder→decoder skips: ``True`` (all), ``False`` (none, a plain
encoder-decoder), or one bool per level, outermost first: ``skips[0]`` is the full-resolution
skip, ``skips[depth - 1]`` the one just above the bottleneck. Where a skip is off, that level's
decoder ``DoubleConv`` takes only the ``c = base * 2**level`` upsampled channels instead of ``2c``:
its first 3x3 convolution loses the ``9 * c * c`` weights that read the skip, and every other
layer is identical, so "with" and "without" differ in nothing but the skip. (Feeding zeros in
place of the skip would compute exactly the same function with unused weights.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from skiplib.blocks.unet import DoubleConv, Down, OutConv, Up
from skiplib.checks import check_positive_ints
from skiplib.models.registry import fixed_by_name, register_model

PAPER_PARAMETERS = 31_030_658  # UNet() = the configuration of Ronneberger et al. (2015), Fig. 1


def _skip_mask(skips: bool | Sequence[bool], depth: int) -> tuple[bool, ...]:
    if isinstance(skips, bool):
        return (skips,) * depth
    mask = tuple(skips)
    if len(mask) != depth or not all(isinstance(s, bool) for s in mask):
        raise ValueError(f"skips must be a bool or one bool per level (outermost first), i.e. {depth} bools "
                         f"for depth={depth}; got {skips!r}")
    return mask


class UNet(nn.Module):
    """Encoder (``inc``, ``downs``), decoder (``ups``), ``outc``; see the module docstring.

    Any input of at least ``2**depth`` pixels per side gives an output of the same height and
    width: ``Up`` pads where max-pooling floored an odd size. Chapter 6."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, base: int = 64, depth: int = 4,
                 skips: bool | Sequence[bool] = True, *, bilinear: bool = False, batch_norm: bool = False,
                 bias: bool | None = None, residual_encoder: bool = False) -> None:
        super().__init__()
        check_positive_ints(in_channels=in_channels, num_classes=num_classes, base=base, depth=depth)
        self.depth = depth
        self.skips = _skip_mask(skips, depth)
        kw = {"batch_norm": batch_norm, "bias": bias}
        widths = [base * 2**i for i in range(depth + 1)]  # channels at each level, top to bottleneck
        # residual_encoder (Chapter 7): residual short skips inside every encoder DoubleConv
        self.inc = DoubleConv(in_channels, widths[0], residual=residual_encoder, **kw)
        self.downs = nn.ModuleList(Down(widths[i], widths[i + 1], residual=residual_encoder, **kw) for i in range(depth))
        # ups[0] is the deepest; ups[depth - 1] returns to full resolution
        self.ups = nn.ModuleList(
            Up(widths[i + 1], widths[i], bilinear=bilinear, skip=self.skips[i], **kw) for i in reversed(range(depth)))
        self.outc = OutConv(widths[0], num_classes)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's maps at every level, top (full resolution) to bottleneck."""
        min_side = 2**self.depth
        if x.dim() != 4 or min(x.shape[-2:]) < min_side:
            raise ValueError(f"UNet(depth={self.depth}) needs [N, C, H, W] input with H, W >= 2**depth = {min_side}, "
                             f"got shape {tuple(x.shape)}")
        features = [self.inc(x)]
        for down in self.downs:
            features.append(down(features[-1]))
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encode(x)
        out = features.pop()  # the bottleneck
        for up in self.ups:
            out = up(out, features.pop())  # a skip-less Up reads only the skip's size
        return self.outc(out)


@register_model("unet")
def unet(**kw) -> UNet:
    """The paper's U-Net configuration (31,030,658 parameters by count; the paper states none);
    keywords override, e.g. ``base=16, depth=3``."""
    return UNet(**kw)


@register_model("unet_noskip")
def unet_noskip(**kw) -> UNet:
    """The same encoder-decoder without long skips (Chapter 6's ablation); ``skips`` is fixed to False."""
    return UNet(**fixed_by_name("unet_noskip", kw, "use create_model('unet', skips=...) to choose the skips", skips=False))
