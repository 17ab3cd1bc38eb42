"""ImageNet ResNet-18/34/50 (He et al. 2016a, Table 1), interchangeable with torchvision's; Chapter 4.

The layout and every attribute name follow ``torchvision.models.resnet`` (``conv1``, ``bn1``,
``maxpool``, ``layer1..4``, ``fc``; blocks with ``downsample = Sequential(conv1x1, BN)``),
so ``state_dict`` keys and parameter counts are identical and torchvision's checkpoints load
with ``strict=True``. The blocks are skiplib's own :class:`BasicBlock` and :class:`Bottleneck`;
``shortcut`` picks option A, B (torchvision's and the default) or C for the comparisons of
Chapter 4 (only B loads torchvision's weights).

``pretrained=True`` fetches torchvision's ImageNet weights through ``torch.hub``'s cache
(:mod:`skiplib.models._weights`); where they cannot be downloaded it raises a RuntimeError saying
which file to put where.
"""

from __future__ import annotations

import torch
from torch import nn

from skiplib.blocks import BasicBlock, Bottleneck, check_shortcut, he_init_
from skiplib.checks import check_positive_int_sequence, check_positive_ints
from skiplib.models._weights import check_pretrained_kwargs, load_pretrained_state_dict
from skiplib.models.registry import register_model
from skiplib.models.stages import StagedNet, make_stage

ARCHS = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet34": (BasicBlock, (3, 4, 6, 3)), "resnet50": (Bottleneck, (3, 4, 6, 3))}
# torchvision 0.17+ counts, asserted in the tests and in Chapter 4
TORCHVISION_PARAMETERS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032}


class ResNet(StagedNet):
    """ImageNet ResNet: 7x7/2 stem conv, BN, ReLU, 3x3/2 max-pool, four stages, average pool, fc.

    ``block`` is :class:`BasicBlock` or :class:`Bottleneck`; ``layers`` gives the blocks per
    stage (ResNet-34: 3, 4, 6, 3). Stage ``i`` has ``64 * 2**i`` planes (times the block's
    expansion at its output); stages 2-4 halve the resolution in their first block.
    ``blocks()`` and ``zero_init_last()`` come from :class:`~skiplib.models.stages.StagedNet`.
    """

    stage_names = ("layer1", "layer2", "layer3", "layer4")

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int] | list[int],
        num_classes: int = 1000,
        shortcut: str = "projection",
        zero_init_residual: bool = False,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if block not in (BasicBlock, Bottleneck):
            raise ValueError(f"block must be skiplib's BasicBlock or Bottleneck, got {block!r}")
        layers = check_positive_int_sequence("layers", layers, "positive ints (blocks per stage, e.g. (3, 4, 6, 3))",
                                             length=4)
        check_positive_ints(num_classes=num_classes, in_channels=in_channels)
        self.shortcut = check_shortcut(shortcut)
        new_block = lambda cin, planes, stride: block(cin, planes, stride, self.shortcut)  # noqa: E731
        e = block.expansion  # a block of ``planes`` outputs planes * e channels
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()  # not in-place (torchvision's is): probes hook the BN output
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = make_stage(new_block, 64, 64, layers[0], 1, expansion=e)
        self.layer2 = make_stage(new_block, 64 * e, 128, layers[1], 2, expansion=e)
        self.layer3 = make_stage(new_block, 128 * e, 256, layers[2], 2, expansion=e)
        self.layer4 = make_stage(new_block, 256 * e, 512, layers[3], 2, expansion=e)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * e, num_classes)
        he_init_(self)
        if zero_init_residual:
            self.zero_init_last()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def _build(arch: str, pretrained: bool | str, progress: bool, download: bool, **kwargs) -> ResNet:
    block, layers = ARCHS[arch]
    fixed = [k for k in ("block", "layers") if k in kwargs]
    if fixed:  # the name says which; ResNet(block, layers) builds any other
        raise ValueError(f"{arch} fixes {' and '.join(fixed)} by its name; use create_model('resnet18' / 'resnet34' / "
                         "'resnet50') or ResNet(block, layers) for another layout")
    if pretrained is False or pretrained is None:
        return ResNet(block, layers, **kwargs)
    check_pretrained_kwargs(arch, kwargs, num_classes=1000, shortcut="projection", in_channels=3)
    state = load_pretrained_state_dict(arch, pretrained, download=download, progress=progress)
    model = ResNet(block, layers, **kwargs)
    model.load_state_dict(state, strict=True)
    return model


@register_model("resnet18")
def resnet18(pretrained: bool | str = False, *, progress: bool = True, download: bool = True, **kwargs) -> ResNet:
    """ImageNet ResNet-18 (11,689,512 parameters), torchvision-compatible. Not the CIFAR ``resnet20``."""
    return _build("resnet18", pretrained, progress, download, **kwargs)


@register_model("resnet34")
def resnet34(pretrained: bool | str = False, *, progress: bool = True, download: bool = True, **kwargs) -> ResNet:
    """ImageNet ResNet-34 (21,797,672 parameters), torchvision-compatible; the network of Chapter 4."""
    return _build("resnet34", pretrained, progress, download, **kwargs)


@register_model("resnet50")
def resnet50(pretrained: bool | str = False, *, progress: bool = True, download: bool = True, **kwargs) -> ResNet:
    """ImageNet ResNet-50 with bottleneck blocks (25,557,032 parameters). Not the CIFAR ``resnet56``."""
    return _build("resnet50", pretrained, progress, download, **kwargs)
