"""The CIFAR-10 ResNets and their plain twins (He et al. 2016, Sec. 4.2), from Chapter 1 on.

A 32x32 input goes through a 3x3 conv with 16 filters, then three stages of n blocks with
16, 32 and 64 filters on 32x32, 16x16 and 8x8 maps (the first block of stages 2 and 3 has
stride 2), global average pooling and a 10-way linear layer: 6n + 2 weighted layers.
``plain-d`` is exactly ``resnet-d`` with ``shortcut="none"``: same layers, same parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from skiplib.blocks import BasicBlock, check_shortcut, he_init_
from skiplib.checks import check_cifar_depth, check_positive_int_sequence, check_positive_ints
from skiplib.models.registry import fixed_by_name, register_model
from skiplib.models.stages import StagedNet, make_stage

CIFAR_DEPTHS = (20, 32, 44, 56, 110)


def check_cifar_net(net: str, depth: int, widths, num_classes: int,
                    in_channels: int) -> tuple[tuple[int, int, int], int]:
    """Check the arguments every CIFAR net of the course shares (ResNet, plain, pre-activation,
    highway): depth 6n+2, three positive stage widths, positive ``num_classes`` and ``in_channels``;
    a ValueError naming the argument otherwise (a zero width would only fail deep inside torch).
    Returns ``widths`` as a tuple and n, the blocks per stage."""
    n = check_cifar_depth(depth, net)
    widths = check_positive_int_sequence("widths", widths, "channel counts, one per stage (e.g. (16, 32, 64))",
                                         length=3)
    check_positive_ints(num_classes=num_classes, in_channels=in_channels)
    return widths, n


def _depth_hint(prefix: str, cls: str) -> str:
    return (f"use create_model('{prefix}<depth>') for depth in {CIFAR_DEPTHS}, or {cls}(depth=...) for any 6n+2")


class CifarResNet(StagedNet):
    """ResNet-(6n+2) for 32x32 images; ``shortcut`` chooses residual (A/B) or plain.

    ``blocks()`` and ``zero_init_last()`` come from :class:`~skiplib.models.stages.StagedNet`."""

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        shortcut: str = "identity",
        widths: tuple[int, int, int] = (16, 32, 64),
        in_channels: int = 3,
        block: Callable[[int, int, int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        widths, n = check_cifar_net("CIFAR ResNet", depth, widths, num_classes, in_channels)
        self.depth = depth
        self.shortcut = check_shortcut(shortcut)
        # ``block(in_channels, out_channels, stride)`` swaps in another block (a new kind of skip,
        # Chapter 7's exercise); by default a BasicBlock with ``shortcut``.
        block = block or (lambda cin, cout, stride: BasicBlock(cin, cout, stride, self.shortcut))
        self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.layer1 = make_stage(block, widths[0], widths[0], n, stride=1)
        self.layer2 = make_stage(block, widths[0], widths[1], n, stride=2)
        self.layer3 = make_stage(block, widths[1], widths[2], n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[2], num_classes)
        he_init_(self)  # as in the paper (and torchvision)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def cifar_resnet(depth: int, shortcut: str = "identity", **kwargs) -> CifarResNet:
    """CIFAR ResNet of the given depth; ``shortcut="none"`` gives the plain net."""
    return CifarResNet(depth=depth, shortcut=shortcut, **kwargs)


def plain_net(depth: int, **kwargs) -> CifarResNet:
    """The plain CIFAR net: the ResNet's layers without any shortcut."""
    if "shortcut" in kwargs:
        raise ValueError("a plain net has no shortcuts; use cifar_resnet(depth, shortcut=...) instead")
    return CifarResNet(depth=depth, shortcut="none", **kwargs)


def _register_depth(depth: int) -> None:
    # depth is fixed by the name; a closure, not a default argument that a caller could override
    register_model(f"resnet{depth}")(
        lambda **kw: cifar_resnet(**fixed_by_name(f"resnet{depth}", kw, _depth_hint("resnet", "CifarResNet"), depth=depth)))
    register_model(f"plain{depth}")(
        lambda **kw: plain_net(**fixed_by_name(f"plain{depth}", kw, _depth_hint("plain", "CifarResNet"), depth=depth)))


for _depth in CIFAR_DEPTHS:
    _register_depth(_depth)
