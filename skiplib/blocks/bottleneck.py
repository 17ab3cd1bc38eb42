"""The bottleneck residual block, taught in Chapter 4.

:class:`Bottleneck` (He et al. 2016a, Sec. 4.1): 1x1 conv down to ``planes`` channels, 3x3 conv,
1x1 conv up to ``planes * 4``; the block of ResNet-50/101/152. The stride sits on the 3x3 conv, as
in torchvision ("ResNet v1.5"), so torchvision checkpoints load. It takes the same ``shortcut``
options as :class:`~skiplib.blocks.residual.BasicBlock` (``"identity"`` A, ``"projection"`` B,
``"projection_all"`` C, ``"none"`` plain) and has ``zero_init_last()``, which makes the residual
branch output exactly zero.
"""

from __future__ import annotations

import torch
from torch import nn

from skiplib.blocks.residual import check_shortcut, conv1x1, conv3x3, make_shortcut
from skiplib.checks import check_positive_ints


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 residual block with ``expansion = 4`` (Chapter 4).

    ``Bottleneck(in_channels, planes, stride)`` outputs ``planes * 4`` channels, the same
    convention as torchvision, so a stage builder can call ``block(in, planes, stride, shortcut)``
    for both block types (a :class:`BasicBlock` has expansion 1). Attribute names follow
    torchvision (``conv1..3``, ``bn1..3``, ``downsample``) so that checkpoints interchange.
    The default shortcut is option B, the one ResNet-50 uses.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, shortcut: str = "projection") -> None:
        super().__init__()
        check_positive_ints(in_channels=in_channels, planes=planes, stride=stride)
        self.shortcut = check_shortcut(shortcut)
        out_channels = planes * self.expansion
        self.conv1 = conv1x1(in_channels, planes)  # squeeze: the 3x3 conv works on few channels
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out_channels)  # expand back to the wide residual stream
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()  # not in-place: probes hook the BN outputs
        self.downsample = make_shortcut(shortcut, in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)
        out = self.conv3(out)
        out = self.bn3(out)
        if self.shortcut != "none":
            identity = x if self.downsample is None else self.downsample(x)
            out = out + identity  # not in-place: hooks may hold `out`
        return self.relu(out)

    @torch.no_grad()
    def zero_init_last(self) -> None:
        """Zero the last BN's scale (Goyal et al. 2017): the block starts as relu(shortcut(x))."""
        nn.init.zeros_(self.bn3.weight)
