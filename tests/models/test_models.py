"""CIFAR ResNets and plain nets: paper parameter counts, registry, shapes, errors; every registered model's
forward and backward pass."""

import re

import pytest
import torch

from skiplib.blocks import SHORTCUTS, BasicBlock, PadShortcut, make_shortcut
from skiplib.models import (
    CIFAR_DEPTHS,
    CifarResNet,
    cifar_resnet,
    count_parameters,
    create_model,
    list_models,
    plain_net,
)

# He et al. (2016) quote 0.27M / 0.85M / 1.7M; these are the exact counts of their design
PAPER_COUNTS = {"resnet20": 269_722, "plain20": 269_722, "resnet56": 853_018, "plain56": 853_018, "resnet110": 1_727_962}


@pytest.mark.parametrize("name,expected", PAPER_COUNTS.items())
def test_paper_parameter_counts(name, expected):
    assert count_parameters(create_model(name)) == expected


def test_projection_shortcut_adds_two_1x1_convs_with_bn():
    assert count_parameters(create_model("resnet20", shortcut="projection")) == 272_474


CIFAR_NAMES = [f"{family}{d}" for d in CIFAR_DEPTHS for family in ("plain", "resnet")]


def test_cifar_family_is_registered():
    assert set(CIFAR_NAMES) <= set(list_models())


def _small_run(name: str) -> tuple[dict, tuple[int, ...], tuple[int, ...]]:
    """How to build registered model ``name`` small and feed it: keywords, input shape, output shape."""
    if name.startswith("unet"):
        return {"base": 4, "depth": 2}, (2, 1, 12, 12), (2, 2, 12, 12)
    if name.endswith("_fc"):
        return {}, (2, 3, 8, 8), (2, 10)  # 192 input features, the default
    if name in ("resnet18", "resnet34", "resnet50", "densenet121"):  # the ImageNet nets, with 10 classes
        return {"num_classes": 10}, (2, 3, 32, 32), (2, 10)
    return {}, (2, 3, 16, 16), (2, 10)


@pytest.mark.parametrize("name", list_models())
def test_registry_models_forward_backward(name):
    """Every registered model: the right output shape, finite, and every parameter gets a gradient."""
    kwargs, in_shape, out_shape = _small_run(name)
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    out = model(torch.randn(*in_shape))
    assert out.shape == out_shape and torch.isfinite(out).all()
    out.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"


def test_plain_and_resnet_share_layers_and_state_dict_keys():
    plain, res = create_model("plain32"), create_model("resnet32")
    assert list(plain.state_dict()) == list(res.state_dict())
    assert len(res.blocks()) == 15


@pytest.mark.parametrize("depth", [21, 0, 2, 19, "20"])
def test_bad_depth_raises_with_rule(depth):
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(depth)


def test_unknown_shortcut_names_allowed_values():
    with pytest.raises(ValueError) as e:
        cifar_resnet(20, shortcut="gated")
    for allowed in SHORTCUTS:
        assert allowed in str(e.value)


def test_unknown_model_lists_registered_names():
    with pytest.raises(ValueError, match="resnet56"):
        create_model("resnet57")


def test_plain_net_refuses_shortcut_argument():
    with pytest.raises(ValueError, match="plain"):
        plain_net(20, shortcut="identity")


def test_pad_shortcut_subsamples_and_zero_pads():
    x = torch.randn(2, 16, 8, 8)
    out = PadShortcut(16, 32, 2)(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(out[:, 16:]) == 0
    with pytest.raises(ValueError, match="projection"):
        PadShortcut(32, 16, 1)


def test_make_shortcut_options():
    assert make_shortcut("identity", 16, 16, 1) is None
    assert make_shortcut("none", 16, 32, 2) is None
    assert isinstance(make_shortcut("identity", 16, 32, 2), PadShortcut)
    proj = make_shortcut("projection", 16, 32, 2)
    assert count_parameters(proj) == 16 * 32 + 2 * 32


def test_residual_block_adds_its_input():
    torch.manual_seed(0)
    res, plain = BasicBlock(8, 8, shortcut="identity"), BasicBlock(8, 8, shortcut="none")
    plain.load_state_dict(res.state_dict())
    x = torch.randn(2, 8, 6, 6)
    pre = plain.bn2(plain.conv2(plain.relu(plain.bn1(plain.conv1(x)))))
    assert torch.allclose(res(x), torch.relu(pre + x))
    assert torch.allclose(plain(x), torch.relu(pre))


def test_zero_init_last_makes_residual_block_relu_of_shortcut():
    block = BasicBlock(8, 16, stride=2, shortcut="identity").eval()
    block.zero_init_last()
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(block(x), torch.relu(block.downsample(x)))
    plain = BasicBlock(8, 8, shortcut="none").eval()
    plain.zero_init_last()
    assert torch.count_nonzero(plain(x)) == 0


def test_model_zero_init_last_makes_every_same_shape_block_identity_on_nonnegative_input():
    model = create_model("resnet20").eval()
    model.zero_init_last()
    x = torch.rand(2, 16, 8, 8)  # non-negative, as after a ReLU
    for block in model.layer1:
        assert torch.equal(block(x), x)


# every registered name that carries a depth (resnet20, plain56, preact110, highway32 …) builds that depth only
IMAGENET = ("resnet18", "resnet34", "resnet50")
NAMED_DEPTHS = [(n, int(m[2])) for n in list_models()
                if (m := re.fullmatch(r"(resnet|plain|preact|highway)(\d+)", n)) and n not in IMAGENET]


def test_named_depths_cover_every_cifar_family():
    assert {n.rstrip("0123456789") for n, _ in NAMED_DEPTHS} == {"resnet", "plain", "preact", "highway"}


@pytest.mark.parametrize("name,depth", NAMED_DEPTHS)
def test_a_name_fixes_its_depth(name, depth):
    assert create_model(name, depth=depth).depth == depth  # the name's own depth, spelled out, is fine
    other = 8 if depth != 8 else 14
    with pytest.raises(ValueError, match=rf"{name} has depth={depth} fixed by its name, got depth={other}"):
        create_model(name, depth=other)
