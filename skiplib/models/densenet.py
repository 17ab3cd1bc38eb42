"""DenseNets (Huang et al. 2017): CIFAR DenseNet and DenseNet-BC, ImageNet DenseNet-121; Chapter 5.

One class, :class:`DenseNet`, laid out like ``torchvision.models.densenet.DenseNet``: a
``features`` Sequential (stem, ``denseblock1..``, ``transition1..``, ``norm5``), then ReLU,
global average pooling and ``classifier``. State-dict keys and parameter counts of
:func:`densenet121` are torchvision's, so its checkpoints load with ``strict=True``.

* CIFAR (paper Sec. 4.2, Table 2): a 3x3 conv stem, three dense blocks on 32x32, 16x16 and 8x8
  maps. ``densenet40``: L = 40, k = 12, no bottleneck, no compression, 16 stem channels
  (1,019,722 parameters; paper 1.0M). ``densenet_bc100``: L = 100, k = 12, bottleneck 4k,
  compression 0.5, 2k stem channels (769,162; paper 0.8M).
* ImageNet ``densenet121``: 7x7/2 conv, BN, ReLU, 3x3/2 max-pool, blocks of (6, 12, 24, 16)
  layers, k = 32 (7,978,856 parameters). ``pretrained=True`` fetches torchvision's weights
  through ``torch.hub``'s cache (:mod:`skiplib.models._weights`); offline it raises a
  RuntimeError saying which file to put where.

``memory_efficient=True`` switches every dense layer to gradient checkpointing (Pleiss et al.
2017): identical outputs and gradients, activation memory linear in depth.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from skiplib.blocks.dense import DenseBlock, DenseLayer, Transition
from skiplib.checks import check_positive_int_sequence, check_positive_ints
from skiplib.models._weights import check_pretrained_kwargs, load_pretrained_state_dict
from skiplib.models.registry import fixed_by_name, register_model

# exact counts of the paper's designs; asserted in the tests and in Chapter 5
PARAMETERS = {"densenet40": 1_019_722, "densenet_bc100": 769_162, "densenet121": 7_978_856}
STEMS = ("cifar", "imagenet")


class DenseNet(nn.Module):
    """DenseNet with ``len(block_config)`` dense blocks and a transition after each but the last.

    ``bn_size=None`` drops the bottleneck (plain DenseNet), ``compression`` < 1 compresses in
    the transitions (DenseNet-C); both: DenseNet-BC. ``stem="cifar"`` is one 3x3 conv,
    ``"imagenet"`` torchvision's 7x7/2 conv-BN-ReLU-maxpool.
    """

    def __init__(self, growth_rate: int = 32, block_config: tuple[int, ...] = (6, 12, 24, 16),
                 num_init_features: int = 64, bn_size: int | None = 4, compression: float = 0.5,
                 drop_rate: float = 0.0, num_classes: int = 1000, stem: str = "imagenet",
                 memory_efficient: bool = False, in_channels: int = 3) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}: allowed values are {', '.join(STEMS)}")
        check_positive_int_sequence("block_config", block_config, "positive ints (layers per dense block)")
        check_positive_ints(num_classes=num_classes, num_init_features=num_init_features, in_channels=in_channels,
                            growth_rate=growth_rate)
        if stem == "imagenet":
            stem_layers = [
                ("conv0", nn.Conv2d(in_channels, num_init_features, kernel_size=7, stride=2, padding=3, bias=False)),
                ("norm0", nn.BatchNorm2d(num_init_features)),
                ("relu0", nn.ReLU()),
                ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
            ]
        else:  # the paper's CIFAR stem: one conv; the first dense layer's BN-ReLU follows it
            stem_layers = [("conv0", nn.Conv2d(in_channels, num_init_features, kernel_size=3, padding=1, bias=False))]
        self.features = nn.Sequential(OrderedDict(stem_layers))
        channels = num_init_features
        for i, num_layers in enumerate(block_config):
            block = DenseBlock(num_layers, channels, growth_rate, bn_size, drop_rate, memory_efficient)
            self.features.add_module(f"denseblock{i + 1}", block)
            channels = block.out_channels
            if i != len(block_config) - 1:
                trans = Transition(channels, compression)
                self.features.add_module(f"transition{i + 1}", trans)
                channels = trans.out_channels
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.classifier = nn.Linear(channels, num_classes)
        self.num_features = channels
        # torchvision's initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def dense_blocks(self) -> list[DenseBlock]:
        """The dense blocks in forward order."""
        return [m for m in self.features if isinstance(m, DenseBlock)]

    def dense_layers(self) -> list[DenseLayer]:
        """Every dense layer in forward order."""
        return [layer for block in self.dense_blocks() for layer in block.values()]

    def set_memory_efficient(self, on: bool = True) -> DenseNet:
        """Switch gradient checkpointing of every dense layer on or off; returns the model."""
        for block in self.dense_blocks():
            block.set_memory_efficient(on)
        return self

    def forward(self, x: Tensor) -> Tensor:
        features = self.features(x)
        out = F.relu(features)
        out = F.adaptive_avg_pool2d(out, (1, 1))
        out = torch.flatten(out, 1)
        return self.classifier(out)


def is_cifar_densenet_depth(depth, bottleneck: bool = False) -> bool:
    """True for the depths of the paper's CIFAR DenseNet: L = 3n + 4 (one conv per dense layer,
    three blocks of n layers, plus the stem, two transitions and the classifier), or L = 6n + 4
    with a bottleneck (two convs per layer); n >= 1."""
    per_layer = 6 if bottleneck else 3
    return not isinstance(depth, bool) and isinstance(depth, int) and depth >= 4 + per_layer \
        and (depth - 4) % per_layer == 0


def cifar_densenet(depth: int = 40, growth_rate: int = 12, bottleneck: bool = False, compression: float = 1.0,
                   num_classes: int = 10, **kwargs) -> DenseNet:
    """The paper's CIFAR DenseNet of ``depth`` L: three dense blocks of (L - 4) / 3 layers (L = 3n + 4),
    or with ``bottleneck`` (two convs per layer) (L - 4) / 6 layers (L = 6n + 4); the stem has 16
    channels, or 2k for DenseNet-BC (bottleneck and compression < 1)."""
    if not is_cifar_densenet_depth(depth, bottleneck):
        rule = "6n+4 with a bottleneck (10, 16, 22, 28, 40, 100, ...)" if bottleneck else "3n+4 (7, 10, 13, 22, 40, 100, ...)"
        raise ValueError(f"CIFAR DenseNet depth must be {rule}, got {depth!r}")
    n = (depth - 4) // (6 if bottleneck else 3)
    init = 2 * growth_rate if bottleneck and compression < 1 else 16
    kwargs.setdefault("num_init_features", init)
    return DenseNet(growth_rate=growth_rate, block_config=(n, n, n), bn_size=4 if bottleneck else None,
                    compression=compression, num_classes=num_classes, stem="cifar", **kwargs)


_HINT = "use cifar_densenet(depth, growth_rate, bottleneck, compression) for another CIFAR DenseNet"


@register_model("densenet40")
def densenet40(**kwargs) -> DenseNet:
    """CIFAR DenseNet, L = 40, k = 12 (1,019,722 parameters; paper: 1.0M)."""
    kwargs.setdefault("growth_rate", 12)
    return cifar_densenet(**fixed_by_name("densenet40", kwargs, _HINT, depth=40))


@register_model("densenet_bc100")
def densenet_bc100(**kwargs) -> DenseNet:
    """CIFAR DenseNet-BC, L = 100, k = 12, theta = 0.5 (769,162 parameters; paper: 0.8M)."""
    kwargs.setdefault("growth_rate", 12)
    return cifar_densenet(**fixed_by_name("densenet_bc100", kwargs, _HINT, depth=100, bottleneck=True, compression=0.5))



@register_model("densenet121")
def densenet121(pretrained: bool | str = False, *, progress: bool = True, download: bool = True,
                **kwargs) -> DenseNet:
    """ImageNet DenseNet-121 (k = 32, blocks 6-12-24-16; 7,978,856 parameters), torchvision-compatible."""
    if pretrained not in (False, None):
        check_pretrained_kwargs("densenet121", kwargs, num_classes=1000, in_channels=3, growth_rate=32,
                                block_config=(6, 12, 24, 16), num_init_features=64, bn_size=4, compression=0.5)
    for key, value in (("growth_rate", 32), ("block_config", (6, 12, 24, 16)), ("num_init_features", 64)):
        kwargs.setdefault(key, value)
    model = DenseNet(stem="imagenet", **kwargs)
    if pretrained not in (False, None):
        state = load_pretrained_state_dict("densenet121", pretrained, download=download, progress=progress)
        model.load_state_dict(state, strict=True)
    return model
