"""The CIFAR-10 ResNets and their plain twins (He et al. 2016, Sec. 4.2), from Chapter 1 on.

A 32x32 input goes through a 3x3 conv with 16 filters, then three stages of n blocks with
16, 32 and 64 filters on 32x32, 16x16 and 8x8 maps (the first block of stages 2 and 3 has
stride 2), global average pooling and a 10-way linear layer: 6n + 2 weighted layers.
``plain-d`` is exactly ``resnet-d`` with ``shortcut="none"``: same layers, same parameters.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from skiplib.blocks import BasicBlock, check_shortcut, he_init_
from skiplib.checks import check_positive_ints
from skiplib.models.registry import fixed_by_name, register_model

CIFAR_DEPTHS = (20, 32, 44, 56, 110)


def check_cifar_net(net: str, depth: int, widths, num_classes: int, in_channels: int) -> tuple[int, int, int]:
    """Check the arguments every CIFAR net of the course shares (ResNet, plain, pre-activation,
    highway): depth 6n+2, three positive stage widths, positive ``num_classes`` and ``in_channels``;
    a ValueError naming the argument otherwise (a zero width would only fail deep inside torch).
    Returns ``widths`` as a tuple."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6 != 0:
        raise ValueError(f"{net} depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), got {depth!r}")
    if not isinstance(widths, (tuple, list)) or len(widths) != 3:
        raise ValueError(f"widths must be 3 channel counts, one per stage (e.g. (16, 32, 64)), got {widths!r}")
    check_positive_ints(**{f"widths[{i}]": w for i, w in enumerate(widths)}, num_classes=num_classes,
                        in_channels=in_channels)
    return tuple(widths)


def _depth_hint(prefix: str, cls: str) -> str:
    return (f"use create_model('{prefix}<depth>') for depth in {CIFAR_DEPTHS}, or {cls}(depth=...) for any 6n+2")


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 images; ``shortcut`` chooses residual (A/B) or plain."""

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
        widths = check_cifar_net("CIFAR ResNet", depth, widths, num_classes, in_channels)
        self.depth = depth
        self.shortcut = check_shortcut(shortcut)
        # ``block(in_channels, out_channels, stride)`` swaps in another block (a new kind of skip,
        # Chapter 7's exercise); by default a BasicBlock with ``shortcut``.
        self._block = block or (lambda cin, cout, stride: BasicBlock(cin, cout, stride, self.shortcut))
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.layer1 = self._make_stage(widths[0], widths[0], n, stride=1)
        self.layer2 = self._make_stage(widths[0], widths[1], n, stride=2)
        self.layer3 = self._make_stage(widths[1], widths[2], n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[2], num_classes)
        he_init_(self)  # as in the paper (and torchvision)

    def _make_stage(self, in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [self._block(in_channels, out_channels, stride)]
        layers += [self._block(out_channels, out_channels, 1) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def blocks(self) -> list[BasicBlock]:
        """All residual (or plain) blocks in forward order."""
        return [b for stage in (self.layer1, self.layer2, self.layer3) for b in stage]

    def zero_init_last(self) -> None:
        """Zero the last BN scale of every block (Goyal et al. 2017); see BasicBlock.zero_init_last."""
        for block in self.blocks():
            block.zero_init_last()

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
