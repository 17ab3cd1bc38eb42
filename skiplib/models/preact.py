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
from skiplib.models.stages import StagedNet, make_stage


class PreActCifarResNet(StagedNet):
    """PreAct-ResNet-(6n+2) for 32x32 images; ``shortcut="none"`` removes every shortcut.

    ``blocks()`` and ``zero_init_last()`` (every block's last conv zeroed: each block starts as
    its shortcut) come from :class:`~skiplib.models.stages.StagedNet`."""

    def __init__(self, depth: int = 20, num_classes: int = 10, shortcut: str = "identity",
                 widths: tuple[int, int, int] = (16, 32, 64), in_channels: int = 3) -> None:
        super().__init__()
        widths, n = check_cifar_net("pre-activation CIFAR ResNet", depth, widths, num_classes, in_channels)
        self.depth = depth
        self.shortcut = check_shortcut(shortcut)
        block = lambda cin, cout, stride: PreActBlock(cin, cout, stride, self.shortcut)  # noqa: E731
        self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1, bias=False)
        self.layer1 = make_stage(block, widths[0], widths[0], n, stride=1)
        self.layer2 = make_stage(block, widths[0], widths[1], n, stride=2)
        self.layer3 = make_stage(block, widths[1], widths[2], n, stride=2)
        self.bn = nn.BatchNorm2d(widths[2])  # the last block ends in a conv: normalise before pooling
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[2], num_classes)
        he_init_(self)

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
