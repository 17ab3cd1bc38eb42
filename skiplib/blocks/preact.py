"""The pre-activation residual block (He et al. 2016b), taught in Chapter 4 and used in 7 and 8.

:class:`PreActBlock`: BN-ReLU-conv-BN-ReLU-conv with *no* ReLU after the addition, so the shortcut
path from one block to the next is a pure identity. It takes the same ``shortcut`` options as
:class:`~skiplib.blocks.residual.BasicBlock` and has ``zero_init_last()``.
"""

from __future__ import annotations

import torch
from torch import nn

from skiplib.blocks.residual import check_shortcut, conv3x3, make_shortcut
from skiplib.checks import check_positive_ints


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016b), Chapter 4: out = x' + F(x), no final ReLU.

    F(x) = conv2(relu(bn2(conv1(relu(bn1(x)))))). Where a shortcut module is needed (shape
    change with option A/B, or always with option C) it reads the block's raw input, as in the
    authors' code, so that nothing but that one module sits on the path between blocks.
    A network of these blocks needs one BN-ReLU after its last block (the branch ends in a conv).
    """

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, shortcut: str = "identity") -> None:
        super().__init__()
        check_positive_ints(in_channels=in_channels, out_channels=out_channels, stride=stride)
        self.shortcut = check_shortcut(shortcut)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.relu = nn.ReLU()
        self.downsample = make_shortcut(shortcut, in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(x)
        out = self.relu(out)
        out = self.conv1(out)
        out = self.bn2(out)
        out = self.relu(out)
        out = self.conv2(out)
        if self.shortcut == "none":
            return out
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity  # no ReLU: the identity path stays clean

    @torch.no_grad()
    def zero_init_last(self) -> None:
        """Zero the last conv: F(x) = 0 exactly, so the block computes its shortcut (the identity)."""
        nn.init.zeros_(self.conv2.weight)
