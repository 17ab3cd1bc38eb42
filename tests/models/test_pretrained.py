"""The torchvision-compatible models (ResNet-18/34/50, Chapter 4; DenseNet-121, Chapter 5) against
torchvision: state_dicts interchange both ways, and torchvision's pretrained weights load through
the one loader, :mod:`skiplib.models._weights`, or fail offline with a message that says what to do."""

import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from skiplib.models._weights import (
    PRETRAINED_ARCHS,
    load_pretrained_state_dict,
    pretrained_weights,
    rename_legacy_keys,
    weights_cache_path,
)
from skiplib.models.densenet import densenet121
from skiplib.models.imagenet import resnet18, resnet34, resnet50

ARCHS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "densenet121": densenet121}


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN scales, shifts and statistics (torchvision's init leaves them trivial)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


def _legacy(state: dict) -> dict:
    """A DenseNet state_dict as torchvision's file stores it: old 'norm.1' keys, no batch counters."""
    return {k.replace("norm1", "norm.1").replace("conv2", "conv.2") if "denselayer" in k else k: v
            for k, v in state.items() if "num_batches_tracked" not in k}


def test_every_loadable_arch_is_a_model_here():
    assert set(PRETRAINED_ARCHS) == set(ARCHS)


@pytest.mark.parametrize("size", [(64, 64), (97, 80)])  # square, and odd non-square
@pytest.mark.parametrize("arch", ARCHS)
def test_torchvision_state_dict_loads_strictly_and_outputs_match(arch, size):
    torch.manual_seed(0)
    theirs = _randomise(getattr(torchvision.models, arch)(weights=None)).eval()
    ours = ARCHS[arch]().eval()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, v.shape) for k, v in theirs.state_dict().items()]
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        out, expected = ours(x), theirs(x)
    if arch == "densenet121":
        assert torch.equal(out, expected)  # bit for bit: the same ops in the same order
    else:
        torch.testing.assert_close(out, expected)
    # and back: our checkpoints load into torchvision
    theirs.load_state_dict(ARCHS[arch]().state_dict(), strict=True)


def test_legacy_torchvision_keys_are_renamed():
    state = {"features.denseblock1.denselayer1.norm.1.weight": 1, "features.denseblock1.denselayer1.conv.2.weight": 2,
             "features.denseblock1.denselayer1.norm.2.num_batches_tracked": 4, "features.norm5.weight": 3,
             "layer1.0.bn1.weight": 5}  # a ResNet key is never touched
    assert list(rename_legacy_keys(state)) == ["features.denseblock1.denselayer1.norm1.weight",
                                               "features.denseblock1.denselayer1.conv2.weight",
                                               "features.denseblock1.denselayer1.norm2.num_batches_tracked",
                                               "features.norm5.weight", "layer1.0.bn1.weight"]


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """An empty torch.hub cache, and a download that fails like an offline machine's."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "hub"


@pytest.mark.parametrize("arch,enum", [("resnet34", "ResNet34_Weights"), ("densenet121", "DenseNet121_Weights")])
def test_pretrained_offline_fails_with_a_clear_message(empty_hub, arch, enum):
    with pytest.raises(RuntimeError) as e:
        ARCHS[arch](pretrained=True)
    msg = str(e.value)
    weights = getattr(torchvision.models, enum).DEFAULT
    assert f"{enum}.IMAGENET1K_V1" in msg and f"for {arch}" in msg
    assert "download failed" in msg and "URLError" in msg
    assert str(weights_cache_path(weights)) in msg and str(empty_hub) in msg
    assert weights.url in msg and "internet" in msg and "pretrained=False" in msg


@pytest.mark.parametrize("arch", ["resnet18", "densenet121"])
def test_pretrained_without_download_says_so(empty_hub, arch):
    with pytest.raises(RuntimeError, match="download=False"):
        load_pretrained_state_dict(arch, download=False)
    with pytest.raises(RuntimeError, match="download=False"):
        ARCHS[arch](pretrained=True, download=False)


@pytest.mark.parametrize("arch", ["resnet18", "densenet121"])
def test_manually_placed_weights_are_used(empty_hub, arch):
    """What the error message tells an offline user to do: put the file in the cache. The DenseNet
    file has torchvision's old 'norm.1' keys; it must still load strictly and compute the same function."""
    torch.manual_seed(0)
    theirs = _randomise(getattr(torchvision.models, arch)(weights=None)).eval()
    path = weights_cache_path(pretrained_weights(arch, True))
    path.parent.mkdir(parents=True)
    torch.save(_legacy(theirs.state_dict()) if arch == "densenet121" else theirs.state_dict(), path)
    ours = ARCHS[arch](pretrained=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out, expected = ours(x), theirs(x)
    if arch == "densenet121":
        assert torch.equal(out, expected)
    else:
        torch.testing.assert_close(out, expected)


def test_pretrained_weights_by_name():
    assert pretrained_weights("resnet50", "IMAGENET1K_V1").name == "IMAGENET1K_V1"
    assert pretrained_weights("resnet50", "ResNet50_Weights.IMAGENET1K_V1").name == "IMAGENET1K_V1"
    assert pretrained_weights("resnet50", True) is torchvision.models.ResNet50_Weights.DEFAULT
    assert pretrained_weights("densenet121", True) is torchvision.models.DenseNet121_Weights.DEFAULT
    with pytest.raises(ValueError, match="IMAGENET1K_V2"):
        pretrained_weights("resnet50", "IMAGENET9K")
    with pytest.raises(ValueError, match="IMAGENET1K_V1 for densenet121"):
        pretrained_weights("densenet121", "IMAGENET9K")
    with pytest.raises(ValueError, match="resnet34"):
        pretrained_weights("resnet101", True)


@pytest.mark.parametrize("arch,kwargs", [("resnet18", {"num_classes": 10}), ("resnet18", {"shortcut": "identity"}),
                                         ("densenet121", {"num_classes": 10}), ("densenet121", {"bn_size": 2})])
def test_pretrained_refuses_a_different_architecture(empty_hub, arch, kwargs):
    # a ValueError before anything is fetched (the hub is empty and offline: a fetch would raise RuntimeError)
    key, value = next(iter(kwargs.items()))
    with pytest.raises(ValueError, match=rf"pretrained weights of {arch} exist only for .*; got {key}={value!r}"):
        ARCHS[arch](pretrained=True, **kwargs)
