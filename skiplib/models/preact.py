"""Pre-activation CIFAR ResNets (He et al. 2016b), used in Chapter 8's gradient-flow comparison.

Same layout as :class:`skiplib.models.cifar.CifarResNet` (3x3 stem with 16 filters, three stages
of n blocks with 16, 32, 64 filters, 6n + 2 weighted layers), built from
:class:`skiplib.blocks.PreActBlock`: BN-ReLU-conv twice, then ``x + F(x)`` with nothing after
the addition. The stem is a bare conv (the first block normalises it) and one BN-ReLU follows
the last block, as in the authors' code. Registered as ``preact20`` … ``preact110``.
"""

from __future__ import annotations

import torch
from torch import nn

from skiplib.blocks import PreActBlock, check_shortcut, he_init_
from skiplib.models.cifar import CIFAR_DEPTHS, _depth_hint, check_cifar_net
from skiplib.models.registry import fixed_by_name, register_model


class PreActCifarResNet(nn.Module):
    """PreAct-ResNet-(6n+2) for 32x32 images; ``shortcut="none"`` removes every shortcut."""

    def __init__(self, depth: int = 20, num_classes: int = 10, shortcut: str = "identity",
                 widths: tuple[int, int, int] = (16, 32, 64), in_channels: int = 3) -> None:
        super().__init__()
        widths = check_cifar_net("CIFAR ResNet", depth, widths, num_classes, in_channels)
        self.depth = depth
        self.shortcut = check_shortcut(shortcut)
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1, bias=False)
        self.layer1 = self._make_stage(widths[0], widths[0], n, stride=1)
        self.layer2 = self._make_stage(widths[0], widths[1], n, stride=2)
        self.layer3 = self._make_stage(widths[1], widths[2], n, stride=2)
        self.bn = nn.BatchNorm2d(widths[2])  # the last block ends in a conv: normalise before pooling
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[2], num_classes)
        he_init_(self)

    def _make_stage(self, in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [PreActBlock(in_channels, out_channels, stride, self.shortcut)]
        layers += [PreActBlock(out_channels, out_channels, 1, self.shortcut) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def blocks(self) -> list[PreActBlock]:
        """All pre-activation blocks in forward order."""
        return [b for stage in (self.layer1, self.layer2, self.layer3) for b in stage]

    def zero_init_last(self) -> None:
        """Zero every block's last conv: each block starts as its shortcut."""
        for block in self.blocks():
            block.zero_init_last()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.bn(x)
        x = self.relu(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def _register_depth(depth: int) -> None:
    register_model(f"preact{depth}")(lambda **kw: PreActCifarResNet(
        **fixed_by_name(f"preact{depth}", kw, _depth_hint("preact", "PreActCifarResNet"), depth=depth)))


for _depth in CIFAR_DEPTHS:
    _register_depth(_depth)
