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

A level's entry may also name what its skip carries, one of :data:`~skiplib.blocks.unet.SKIP_MODES`:
``"full"`` (= ``True``), ``"none"`` (= ``False``, the smaller layer above), and Chapter 6's controls
``"detached"`` (the encoder map goes forward, its gradient does not come back) and ``"gradient_only"``
(zeros go forward; backward, the encoder gets the gradient a full skip fed zeros would send). The two
controls keep the skip's input channels, so ``UNet(skips="detached")`` and ``UNet(skips="gradient_only")``
have exactly the parameters of ``UNet(skips=True)``; in ``"gradient_only"`` the weights that read the
skip see zeros and so get a zero gradient (without weight decay they keep their initial values), and
the gradient reaches the encoder through them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from skiplib.blocks.unet import SKIP_MODES, DoubleConv, Down, OutConv, Up, skip_mode
from skiplib.checks import check_positive_ints
from skiplib.models.registry import fixed_by_name, register_model

PAPER_PARAMETERS = 31_030_658  # UNet() = the configuration of Ronneberger et al. (2015), Fig. 1


def _skip_modes(skips: bool | str | Sequence[bool | str], depth: int) -> tuple[str, ...]:
    """One mode of SKIP_MODES per level, outermost first, from a bool, a mode or one of either per level."""
    if isinstance(skips, (bool, str)):
        return (skip_mode(skips),) * depth
    entries = tuple(skips) if isinstance(skips, Sequence) else ()
    if len(entries) != depth or not all(isinstance(s, bool) or (isinstance(s, str) and s in SKIP_MODES)
                                        for s in entries):
        raise ValueError(f"skips must be a bool, a mode, or one bool per level (or one mode per level), outermost "
                         f"first, i.e. {depth} entries for depth={depth}; the modes are "
                         f"{', '.join(map(repr, SKIP_MODES))}; got {skips!r}")
    return tuple(skip_mode(s) for s in entries)


class UNet(nn.Module):
    """Encoder (``inc``, ``downs``), decoder (``ups``), ``outc``; see the module docstring.

    Any input of at least ``2**depth`` pixels per side gives an output of the same height and
    width: ``Up`` pads where max-pooling floored an odd size. Chapter 6."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, base: int = 64, depth: int = 4,
                 skips: bool | str | Sequence[bool | str] = True, *, bilinear: bool = False, batch_norm: bool = False,
                 bias: bool | None = None, residual_encoder: bool = False) -> None:
        super().__init__()
        check_positive_ints(in_channels=in_channels, num_classes=num_classes, base=base, depth=depth)
        self.depth = depth
        self.skip_modes = _skip_modes(skips, depth)  # what each level's skip carries, outermost first
        self.skips = tuple(m != "none" for m in self.skip_modes)  # whether each level concatenates a skip
        kw = {"batch_norm": batch_norm, "bias": bias}
        widths = [base * 2**i for i in range(depth + 1)]  # channels at each level, top to bottleneck
        # residual_encoder (Chapter 7): residual short skips inside every encoder DoubleConv
        self.inc = DoubleConv(in_channels, widths[0], residual=residual_encoder, **kw)
        self.downs = nn.ModuleList(Down(widths[i], widths[i + 1], residual=residual_encoder, **kw) for i in range(depth))
        # ups[0] is the deepest; ups[depth - 1] returns to full resolution
        self.ups = nn.ModuleList(
            Up(widths[i + 1], widths[i], bilinear=bilinear, skip=self.skip_modes[i], **kw) for i in reversed(range(depth)))
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
