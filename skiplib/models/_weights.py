"""torchvision's pretrained ImageNet weights for the course's torchvision-compatible models
(ResNet-18/34/50, Chapter 4; DenseNet-121, Chapter 5): one loader for all of them.

The weights come through ``torch.hub``'s cache: a file found there is used, else it is
downloaded into it. Where neither works (an offline machine, a proxy, ``download=False``) the
loader raises a RuntimeError that says why and what to do: which file to put where, or
``pretrained=False``. A file is loaded with ``weights_only=True``: a weights file holds tensors
only, so loading one can never run code.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from pathlib import Path
from urllib.parse import urlparse

import torch

# the models whose skiplib version has torchvision's state_dict keys (so torchvision's weights load)
PRETRAINED_ARCHS = ("resnet18", "resnet34", "resnet50", "densenet121")


def pretrained_weights(arch: str, pretrained: bool | str = True):
    """torchvision's weights enum member for ``arch``: ``True`` is its DEFAULT, or a name like
    "IMAGENET1K_V1" (or "ResNet50_Weights.IMAGENET1K_V1").

    Needs no network: the enum also carries the class names (``.meta["categories"]``) and the
    preprocessing (``.transforms()``).
    """
    from torchvision.models import get_model_weights

    if arch not in PRETRAINED_ARCHS:
        raise ValueError(f"unknown architecture {arch!r}: allowed values are {', '.join(PRETRAINED_ARCHS)}")
    enum = get_model_weights(arch)
    if pretrained is True:
        return enum.DEFAULT
    names = [w.name for w in enum]
    name = pretrained.removeprefix(f"{enum.__name__}.") if isinstance(pretrained, str) else None
    if name not in names:
        raise ValueError(f"pretrained must be True, False or one of {', '.join(names)} for {arch}, got {pretrained!r}")
    return enum[name]


def check_pretrained_kwargs(arch: str, kwargs: dict, **defaults) -> None:
    """A ValueError before any download when ``kwargs`` change a setting that the pretrained
    weights fix (the weights of a 1000-class net do not fit a 10-class one)."""
    changed = [f"{k}={kwargs[k]!r}" for k, default in defaults.items() if k in kwargs and kwargs[k] != default]
    if changed:
        fixed = ", ".join(f"{k}={v!r}" for k, v in defaults.items())
        raise ValueError(f"pretrained weights of {arch} exist only for {fixed}; got {', '.join(changed)} "
                         "(use pretrained=False for another configuration)")


def weights_cache_path(weights) -> Path:
    """Where ``torch.hub`` keeps (and looks for) the checkpoint file of ``weights``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def fetch_weights(weights, arch: str, *, download: bool = True, progress: bool = True) -> dict[str, torch.Tensor]:
    """The state_dict of torchvision ``weights`` (a ``*_Weights`` member) from the torch hub cache,
    or downloaded into it; a RuntimeError that says how to proceed when neither works."""
    path = weights_cache_path(weights)
    if path.exists():
        try:
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
            return torch.hub.load_state_dict_from_url(weights.url, progress=progress, check_hash=True,
                                                      map_location="cpu", weights_only=True)
        except Exception as e:  # no internet, proxy, disk full, truncated file ...: say what to do
            reason = f"the download failed ({type(e).__name__}: {e})"
    raise RuntimeError(
        f"could not load torchvision's pretrained weights {type(weights).__name__}.{weights.name} for {arch}: "
        f"{reason}.\n"
        f"They are looked for in the torch hub cache: {path}\n"
        "To proceed, either\n"
        "  - run once with internet access (the file is then cached and later runs work offline), or\n"
        f"  - download {weights.url} elsewhere and copy it to {path}\n"
        "    (the cache directory is $TORCH_HOME/hub/checkpoints, by default ~/.cache/torch/hub/checkpoints), or\n"
        "  - use pretrained=False for a randomly initialised network."
    )


# torchvision's DenseNet checkpoints predate the rule that module names have no dots: their dense
# layers say "norm.1" where the module is now "norm1". torchvision renames them when loading; so do we.
_OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
                      r"((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


def rename_legacy_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``...denselayer1.norm.1.weight`` -> ``...denselayer1.norm1.weight`` (torchvision's old
    DenseNet checkpoints); every other key is kept as it is."""
    out = OrderedDict()
    for key, value in state.items():
        m = _OLD_KEY.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out


def load_pretrained_state_dict(arch: str, pretrained: bool | str = True, *, download: bool = True,
                               progress: bool = True) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet state_dict for ``arch`` (one of :data:`PRETRAINED_ARCHS`), keys in
    today's module names, ready for ``load_state_dict(strict=True)``: from the hub cache or
    downloaded into it; a RuntimeError naming the weights, the URL and the cache file, and saying
    how to proceed, when the file is not cached and cannot (or, with ``download=False``, may not)
    be downloaded."""
    state = fetch_weights(pretrained_weights(arch, pretrained), arch, download=download, progress=progress)
    return rename_legacy_keys(state)
