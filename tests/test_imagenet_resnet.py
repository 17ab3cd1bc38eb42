"""ImageNet ResNet-18/34/50 against torchvision: parameters, state_dict keys, outputs, pretrained loading."""

import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from skiplib.blocks import BasicBlock, Bottleneck
from skiplib.models import count_parameters, create_model, list_models
from skiplib.models.imagenet import (
    TORCHVISION_PARAMETERS,
    ResNet,
    load_pretrained_state_dict,
    pretrained_weights,
    resnet18,
    resnet34,
    resnet50,
    weights_cache_path,
)

ARCHS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}


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


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_count_equals_torchvision(arch):
    ours, theirs = ARCHS[arch](), getattr(torchvision.models, arch)(weights=None)
    assert count_parameters(ours) == count_parameters(theirs) == TORCHVISION_PARAMETERS[arch]


def test_parameter_counts_are_the_published_ones():
    assert TORCHVISION_PARAMETERS == {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032}


@pytest.mark.parametrize("size", [(64, 64), (97, 80)])  # square, and odd non-square
@pytest.mark.parametrize("arch", ARCHS)
def test_torchvision_state_dict_loads_strictly_and_outputs_match(arch, size):
    torch.manual_seed(0)
    theirs = _randomise(getattr(torchvision.models, arch)(weights=None)).eval()
    ours = ARCHS[arch]().eval()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in theirs.state_dict().items()]
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))
    # and back: our checkpoints load into torchvision
    theirs.load_state_dict(ARCHS[arch]().state_dict(), strict=True)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_every_parameter_gets_a_gradient(arch):
    torch.manual_seed(0)
    model = create_model(arch, num_classes=10)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"


def test_imagenet_resnets_are_registered_next_to_cifar_ones():
    assert {"resnet18", "resnet34", "resnet50", "resnet20", "resnet56"} <= set(list_models())


def test_shortcut_options_change_only_the_shortcuts():
    a, b, c = (count_parameters(resnet34(shortcut=s)) for s in ("identity", "projection", "projection_all"))
    # B projects where the shape changes: the first block of stages 2-4
    assert b - a == sum(cin * cout + 2 * cout for cin, cout in ((64, 128), (128, 256), (256, 512)))
    # C also projects in the other 3 + 4 + 6 + 3 - 3 = 13 blocks
    assert c - b == 3 * (64 * 64 + 128) + 3 * (128 * 128 + 256) + 5 * (256 * 256 + 512) + 2 * (512 * 512 + 1024)


def test_zero_init_residual_zeroes_every_last_bn():
    model = resnet50(zero_init_residual=True)
    assert all(torch.count_nonzero(block.bn3.weight) == 0 for block in model.blocks())
    model = resnet18(zero_init_residual=True)
    assert all(torch.count_nonzero(block.bn2.weight) == 0 for block in model.blocks())


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """An empty torch.hub cache, and a download that fails like an offline machine's."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "hub"


def test_pretrained_offline_fails_with_a_clear_message(empty_hub):
    with pytest.raises(RuntimeError) as e:
        resnet34(pretrained=True)
    msg = str(e.value)
    weights = torchvision.models.ResNet34_Weights.DEFAULT
    assert "ResNet34_Weights.IMAGENET1K_V1" in msg
    assert "download failed" in msg and "URLError" in msg
    assert str(weights_cache_path(weights)) in msg and str(empty_hub) in msg
    assert weights.url in msg and "internet" in msg and "pretrained=False" in msg


def test_pretrained_without_download_says_so(empty_hub):
    with pytest.raises(RuntimeError, match="download=False"):
        load_pretrained_state_dict("resnet18", download=False)


def test_manually_placed_weights_are_used(empty_hub):
    """What the error message tells an offline user to do: put the file in the cache."""
    torch.manual_seed(0)
    theirs = _randomise(torchvision.models.resnet18(weights=None)).eval()
    path = weights_cache_path(pretrained_weights("resnet18", True))
    path.parent.mkdir(parents=True)
    torch.save(theirs.state_dict(), path)
    ours = resnet18(pretrained=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


def test_pretrained_weights_by_name():
    assert pretrained_weights("resnet50", "IMAGENET1K_V1").name == "IMAGENET1K_V1"
    assert pretrained_weights("resnet50", True) is torchvision.models.ResNet50_Weights.DEFAULT
    with pytest.raises(ValueError, match="IMAGENET1K_V2"):
        pretrained_weights("resnet50", "IMAGENET9K")
    with pytest.raises(ValueError, match="resnet34"):
        pretrained_weights("resnet101", True)


@pytest.mark.parametrize("kwargs", [{"num_classes": 10}, {"shortcut": "identity"}])
def test_pretrained_refuses_a_different_architecture(kwargs):
    with pytest.raises(ValueError, match="pretrained"):
        resnet18(pretrained=True, **kwargs)


@pytest.mark.parametrize("args,kwargs,match", [
    ((BasicBlock, (2, 2, 2)), {}, "4 positive ints"),
    ((BasicBlock, (2, 2, 0, 2)), {}, "4 positive ints"),
    ((nn.Conv2d, (2, 2, 2, 2)), {}, "BasicBlock or Bottleneck"),
    ((Bottleneck, (3, 4, 6, 3)), {"num_classes": 0}, "num_classes"),
    ((BasicBlock, (2, 2, 2, 2)), {"shortcut": "gated"}, "projection_all"),
])
def test_bad_arguments_raise_value_error(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResNet(*args, **kwargs)
