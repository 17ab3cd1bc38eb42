"""ImageNet ResNet-18/34/50 (He et al. 2016a, Table 1), interchangeable with torchvision's; Chapter 4.

The layout and every attribute name follow ``torchvision.models.resnet`` (``conv1``, ``bn1``,
``maxpool``, ``layer1..4``, ``fc``; blocks with ``downsample = Sequential(conv1x1, BN)``),
so ``state_dict`` keys and parameter counts are identical and torchvision's checkpoints load
with ``strict=True``. The blocks are skiplib's own :class:`BasicBlock` and :class:`Bottleneck`;
``shortcut`` picks option A, B (torchvision's and the default) or C for the comparisons of
Chapter 4 (only B loads torchvision's weights).

``pretrained=True`` fetches torchvision's ImageNet weights through ``torch.hub``'s cache; where
they cannot be downloaded it raises a RuntimeError saying which file to put where.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from skiplib.blocks import BasicBlock, Bottleneck, check_shortcut, he_init_
from skiplib.models.registry import register_model

ARCHS = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet34": (BasicBlock, (3, 4, 6, 3)), "resnet50": (Bottleneck, (3, 4, 6, 3))}
# torchvision 0.17+ counts, asserted in the tests and in Chapter 4
TORCHVISION_PARAMETERS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032}


class ResNet(nn.Module):
    """ImageNet ResNet: 7x7/2 stem conv, BN, ReLU, 3x3/2 max-pool, four stages, average pool, fc.

    ``block`` is :class:`BasicBlock` or :class:`Bottleneck`; ``layers`` gives the blocks per
    stage (ResNet-34: 3, 4, 6, 3). Stage ``i`` has ``64 * 2**i`` planes (times the block's
    expansion at its output); stages 2-4 halve the resolution in their first block.
    """

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
        if len(layers) != 4 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in layers):
            raise ValueError(f"layers must be 4 positive ints (blocks per stage, e.g. (3, 4, 6, 3)), got {layers!r}")
        for name, v in (("num_classes", num_classes), ("in_channels", in_channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.shortcut = check_shortcut(shortcut)
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()  # not in-place (torchvision's is): probes hook the BN output
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_stage(block, 64, layers[0], stride=1)
        self.layer2 = self._make_stage(block, 128, layers[1], stride=2)
        self.layer3 = self._make_stage(block, 256, layers[2], stride=2)
        self.layer4 = self._make_stage(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        he_init_(self)
        if zero_init_residual:
            self.zero_init_last()

    def _make_stage(self, block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [block(self.inplanes, planes, stride, self.shortcut)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, 1, self.shortcut) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def blocks(self) -> list[nn.Module]:
        """All residual blocks in forward order."""
        return [b for stage in (self.layer1, self.layer2, self.layer3, self.layer4) for b in stage]

    def zero_init_last(self) -> None:
        """Zero the last BN scale of every block (Goyal et al. 2017): each block starts as relu(shortcut(x))."""
        for block in self.blocks():
            block.zero_init_last()

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


def pretrained_weights(arch: str, pretrained: bool | str = True):
    """torchvision's weights enum member for ``arch``: ``True`` is its DEFAULT, or a name like "IMAGENET1K_V1".

    Needs no network: the enum also carries the class names (``.meta["categories"]``) and the
    preprocessing (``.transforms()``).
    """
    from torchvision.models import get_model_weights

    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}: allowed values are {', '.join(ARCHS)}")
    enum = get_model_weights(arch)
    if pretrained is True:
        return enum.DEFAULT
    names = [w.name for w in enum]
    if not isinstance(pretrained, str) or pretrained.replace(f"{enum.__name__}.", "") not in names:
        raise ValueError(f"pretrained must be True, False or one of {', '.join(names)} for {arch}, got {pretrained!r}")
    return enum[pretrained.replace(f"{enum.__name__}.", "")]


def weights_cache_path(weights) -> Path:
    """Where ``torch.hub`` keeps (and looks for) the checkpoint file of ``weights``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def load_pretrained_state_dict(arch: str, pretrained: bool | str = True, *, download: bool = True,
                               progress: bool = True) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet state_dict for ``arch``, from the hub cache or downloaded into it.

    Raises a RuntimeError naming the weights, the URL and the cache file, and saying how to
    proceed, when the file is not cached and cannot (or, with ``download=False``, may not) be
    downloaded.
    """
    return fetch_weights(pretrained_weights(arch, pretrained), arch, download=download, progress=progress)


def fetch_weights(weights, arch: str, *, download: bool = True, progress: bool = True) -> dict[str, torch.Tensor]:
    """The state_dict of torchvision ``weights`` (a ``*_Weights`` member) from the torch hub cache,
    or downloaded into it; a RuntimeError that says how to proceed when neither works. Shared by
    the ResNets here and DenseNet-121 (Chapter 5)."""
    path = weights_cache_path(weights)
    if path.exists():
        try:
            # weights_only: a weights file holds tensors only, so loading it can never run code
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated download, disk error, an HTML error page saved as .pth ...
            # not torch's own text: for a refused pickle it suggests switching weights_only off, which runs code
            raise RuntimeError(
                f"the cached weights file {path} for {arch} cannot be read ({type(e).__name__}): it is truncated, "
                "corrupt, or holds more than tensors (which could run code, so it is not loaded).\n"
                "To proceed, delete that file and run again to download it afresh, or place a good copy of "
                f"{weights.url} there.") from None
    reason = "downloading is switched off (download=False)"
    if download:
        try:
            return torch.hub.load_state_dict_from_url(weights.url, progress=progress, check_hash=True, map_location="cpu",
                                                      weights_only=True)
        except Exception as e:  # no internet, proxy, disk full, truncated file ...: say what to do
            reason = f"the download failed ({type(e).__name__}: {e})"
    raise RuntimeError(
        f"could not load torchvision's pretrained weights {type(weights).__name__}.{weights.name} for {arch}: {reason}.\n"
        f"They are looked for in the torch hub cache: {path}\n"
        "To proceed, either\n"
        "  - run once with internet access (the file is then cached and later runs work offline), or\n"
        f"  - download {weights.url} elsewhere and copy it to {path}\n"
        "    (the cache directory is $TORCH_HOME/hub/checkpoints, by default ~/.cache/torch/hub/checkpoints), or\n"
        "  - use pretrained=False for a randomly initialised network."
    )


def _build(arch: str, pretrained: bool | str, progress: bool, download: bool, **kwargs) -> ResNet:
    block, layers = ARCHS[arch]
    fixed = [k for k in ("block", "layers") if k in kwargs]
    if fixed:  # the name says which; ResNet(block, layers) builds any other
        raise ValueError(f"{arch} fixes {' and '.join(fixed)} by its name; use create_model('resnet18' / 'resnet34' / "
                         "'resnet50') or ResNet(block, layers) for another layout")
    if pretrained is False or pretrained is None:
        return ResNet(block, layers, **kwargs)
    if kwargs.get("num_classes", 1000) != 1000 or kwargs.get("shortcut", "projection") != "projection" \
            or kwargs.get("in_channels", 3) != 3:
        raise ValueError("pretrained weights exist only for num_classes=1000, shortcut='projection', in_channels=3")
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
