"""CIFAR ResNets built from the five residual units of He et al. (2016b), Fig. 4 (Chapter 4).

The layout of :class:`skiplib.models.cifar.CifarResNet` (3x3 stem with 16 filters, three stages of n
blocks with 16, 32 and 64 filters, 6n + 2 weighted layers) with :class:`~skiplib.blocks.orders.OrderedBlock`.
Nets whose blocks end in an addition with nothing after it (``relu_only_preact``, ``full_preact``) get
one BN-ReLU after the last block, as in the authors' pre-activation code; the other three end their
last block with a ReLU already. Every stem is conv-BN, followed by a ReLU unless the first block
starts with its own activation.
"""

from __future__ import annotations

import torch
from torch import nn

from skiplib.blocks.orders import PRE_ACTIVATION, OrderedBlock, check_order
from skiplib.blocks.residual import he_init_
from skiplib.models.cifar import check_cifar_net
from skiplib.models.stages import StagedNet, make_stage


class OrderNet(StagedNet):
    """ResNet-(6n+2) for 32x32 images whose residual units follow ``order`` (Chapter 4)."""

    def __init__(self, depth: int = 20, order: str = "full_preact", num_classes: int = 10,
                 widths: tuple[int, int, int] = (16, 32, 64), in_channels: int = 3) -> None:
        super().__init__()
        widths, n = check_cifar_net("CIFAR ResNet", depth, widths, num_classes, in_channels)
        self.depth = depth
        self.order = check_order(order)
        pre = order in PRE_ACTIVATION
        block = lambda cin, cout, stride: OrderedBlock(cin, cout, stride, order)  # noqa: E731
        self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.stem_relu = not pre
        self.layer1 = make_stage(block, widths[0], widths[0], n, stride=1)
        self.layer2 = make_stage(block, widths[0], widths[1], n, stride=2)
        self.layer3 = make_stage(block, widths[1], widths[2], n, stride=2)
        self.bn_final = nn.BatchNorm2d(widths[2]) if pre else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[2], num_classes)
        he_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv1(x))
        if self.stem_relu:
            x = self.relu(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        if self.bn_final is not None:
            x = self.relu(self.bn_final(x))
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)
