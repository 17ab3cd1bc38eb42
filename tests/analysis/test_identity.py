"""Tests of skiplib.analysis.identity (Chapter 2): the identity construction is exact, and fails loudly."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from skiplib.analysis.identity import (
    block_stack,
    dataset_loss,
    deepen,
    deepen_cifar,
    deepen_mlp,
    dirac_conv_,
    fit_identity,
    identity_block,
    identity_bn_,
    identity_linear_,
    inserted_block_names,
    loss_curve,
    perturb,
    relative_identity_error,
    shrink,
)
from skiplib.blocks import SHORTCUTS
from skiplib.chapters.ch02_identity import config as chapter_config
from skiplib.exercises.ch02_identity import _CASES, check_dirac_init
from skiplib.models.cifar import CifarResNet
from skiplib.profile import get_profile


def _trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BN non-trivial statistics and affine parameters, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.3)
    return model.eval()


def _max_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return (a(x) - b(x)).abs().max().item()


@pytest.mark.parametrize("shortcut", SHORTCUTS)
@pytest.mark.parametrize("shallow_depth,depth,widths", [
    (8, 14, (16, 32, 64)), (8, 20, (4, 8, 8)), (14, 32, (8, 16, 32)), (20, 56, (16, 32, 64)), (20, 20, (6, 12, 24)),
])
def test_deepen_cifar_is_exact(shallow_depth, depth, widths, shortcut):
    torch.manual_seed(0)
    shallow = _trained_like(CifarResNet(shallow_depth, shortcut=shortcut, widths=widths))
    deep = deepen_cifar(shallow, depth)
    assert isinstance(deep, CifarResNet) and deep.depth == depth and deep.shortcut == shortcut
    assert not deep.training
    x = torch.randn(8, 3, 16, 16) * 2
    assert _max_diff(shallow, deep, x) <= 1e-5
    # the deep copy has the layer count of a CifarResNet(depth): 6n+1 convs + 1 fc
    convs = [m for m in deep.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == depth
    assert len(deep.blocks()) == 3 * (depth - 2) // 6
    assert len(inserted_block_names(shallow_depth, depth)) == (depth - shallow_depth) // 2


def test_deep_plain_copy_is_plain56_with_identity_blocks():
    shallow = _trained_like(CifarResNet(20, shortcut="none"))
    deep = deepen(shallow, 56)
    reference = CifarResNet(56, shortcut="none")
    assert [k for k in deep.state_dict()] == [k for k in reference.state_dict()]
    x = torch.rand(4, 16, 8, 8)
    for name in inserted_block_names(20, 56):
        block = deep.get_submodule(name)
        assert torch.equal(block.conv1.weight, nn.init.dirac_(torch.empty(block.conv1.weight.shape)))
        inp = torch.rand(4, block.conv1.in_channels, 8, 8)
        assert torch.equal(block(inp), inp)
    assert torch.equal(identity_block(16)(x), x)
    assert torch.equal(identity_block(16, "identity")(x), x)


def test_copy_is_float_exact_on_cpu():
    torch.manual_seed(1)
    shallow = _trained_like(CifarResNet(8, shortcut="none"))
    deep = deepen(shallow, 32)
    x = torch.randn(16, 3, 16, 16)
    assert torch.equal(shallow(x), deep(x))


@pytest.mark.parametrize("widths,depth", [((5, 7, 3), 3), ((16, 16), 6), ((4, 32, 32, 8), 9)])
def test_deepen_mlp_is_exact(widths, depth):
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers += [nn.Linear(widths[-1], 10)]
    mlp = nn.Sequential(*layers)
    deep = deepen_mlp(mlp, depth)
    assert sum(isinstance(m, nn.Linear) for m in deep) == depth
    assert sum(isinstance(m, nn.ReLU) for m in deep) == depth - 1
    x = torch.randn(32, widths[0]) * 3
    assert _max_diff(mlp, deep, x) <= 1e-5
    assert deepen(mlp, depth)(x).shape == (32, 10)


def test_mlp_with_batchnorm():
    mlp = _trained_like(nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)))
    deep = deepen_mlp(mlp, 5)
    x = torch.randn(10, 6)
    assert _max_diff(mlp, deep, x) <= 1e-5


def test_identity_layers_and_their_errors():
    x = torch.randn(2, 4, 5, 5)
    conv = dirac_conv_(nn.Conv2d(4, 4, 5, padding=2, bias=True))
    assert torch.equal(conv(x), x)
    lin = identity_linear_(nn.Linear(7, 7))
    v = torch.randn(3, 7)
    assert torch.equal(lin(v), v)
    bn = identity_bn_(_trained_like(nn.BatchNorm2d(4)))
    assert torch.equal(bn(x), x)
    bn_plain = identity_bn_(nn.BatchNorm2d(4, affine=False).eval())
    assert (bn_plain(x) - x).abs().max() <= 1e-6
    for bad, word in [(nn.Conv2d(4, 8, 3, padding=1), "out_channels"), (nn.Conv2d(4, 4, 3, padding=0), "padding"),
                      (nn.Conv2d(4, 4, 3, padding=1, stride=2), "stride"), (nn.Conv2d(4, 4, 2, padding=1), "odd"),
                      (nn.Conv2d(4, 4, 3, padding=1, groups=2), "groups")]:
        with pytest.raises(ValueError, match=word):
            dirac_conv_(bad)
    with pytest.raises(ValueError, match="square"):
        identity_linear_(nn.Linear(3, 4))
    with pytest.raises(ValueError, match="running statistics"):
        identity_bn_(nn.BatchNorm2d(4, track_running_stats=False))


def test_bad_inputs_raise_value_errors():
    shallow = CifarResNet(20, shortcut="none")
    with pytest.raises(ValueError, match="eval"):
        deepen(shallow, 56)  # a fresh model is in training mode
    shallow.eval()
    for depth in (14, 21, 51, "56"):
        with pytest.raises(ValueError, match="6n\\+2|at least as deep"):
            deepen(shallow, depth)
    with pytest.raises(ValueError, match="CifarResNet and nn.Sequential"):
        deepen(nn.Conv2d(3, 3, 3), 10)
    with pytest.raises(ValueError, match="CifarResNet"):
        deepen_cifar(nn.Sequential(), 20)
    with pytest.raises(ValueError, match="Linear, ReLU"):
        deepen_mlp(nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 2)), 4)
    with pytest.raises(ValueError, match="non-negative"):
        deepen_mlp(nn.Sequential(nn.Linear(3, 3)), 2)
    with pytest.raises(ValueError, match=">= the MLP"):
        deepen_mlp(nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)), 1)
    with pytest.raises(ValueError, match="eval"):
        deepen_mlp(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2)), 3)
    with pytest.raises(ValueError, match="sigma"):
        perturb(shallow, [], -1.0)
    with pytest.raises(ValueError, match="no module"):
        perturb(shallow, ["layer9.0"], 0.1)


def test_perturb_and_shrink():
    shallow = _trained_like(CifarResNet(8, shortcut="none"))
    deep = deepen(shallow, 14)
    names = inserted_block_names(8, 14)
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(perturb(deep, names, 0.0)(x), deep(x))
    noisy = perturb(deep, names, 0.5, seed=3)
    assert not torch.equal(noisy(x), deep(x))
    assert torch.equal(noisy.layer1[0].conv1.weight, deep.layer1[0].conv1.weight)  # shallow layers untouched
    half = shrink(deep, 0.5)
    assert torch.allclose(half.fc.weight, deep.fc.weight * 0.5)


def test_chapter_config_profiles():
    for name in ("smoke", "cpu", "gpu"):
        cfg = chapter_config(get_profile(name, device="cpu"))
        assert (cfg["deep_depth"] - 2) % 6 == 0 and cfg["deep_depth"] > cfg["shallow_depth"]
        assert all(k % 2 == 0 for k in cfg["identity_layers"])


# ------------------------------------------------------------------ the coding exercise's check
def _good(conv):
    with torch.no_grad():
        conv.weight.zero_()
        k0, k1 = conv.kernel_size
        for c in range(conv.out_channels):
            conv.weight[c, c, k0 // 2, k1 // 2] = 1.0
        if conv.bias is not None:
            conv.bias.zero_()


def _returns_new(conv):
    new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding, bias=conv.bias is not None)
    nn.init.dirac_(new.weight)
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    return new


def _corner(conv):
    with torch.no_grad():
        conv.weight.zero_()
        for c in range(conv.out_channels):
            conv.weight[c, c, 0, 0] = 1.0


def _all_channels(conv):
    with torch.no_grad():
        conv.weight.zero_()
        k0, k1 = conv.kernel_size
        conv.weight[:, :, k0 // 2, k1 // 2] = 1.0


def _keeps_bias(conv):
    with torch.no_grad():
        nn.init.dirac_(conv.weight)


def _no_grad_missing(conv):
    conv.weight.zero_()  # in-place on a leaf that requires grad: RuntimeError


def _hard_coded_3x3(conv):
    with torch.no_grad():
        conv.weight.zero_()
        for c in range(conv.out_channels):
            conv.weight[c, c, 1, 1] = 1.0
        if conv.bias is not None:
            conv.bias.zero_()


def _scaled(conv):
    with torch.no_grad():
        nn.init.dirac_(conv.weight)
        conv.weight.mul_(2)
        if conv.bias is not None:
            conv.bias.zero_()


def _with_init(conv):
    with torch.no_grad():
        nn.init.dirac_(conv.weight)
        if conv.bias is not None:
            conv.bias.fill_(0.0)
    return conv


@pytest.mark.parametrize("fn", [_good, _returns_new, _with_init])
def test_check_accepts_correct_answers(fn, capsys):
    assert check_dirac_init(fn) is True
    assert f"{len(_CASES)}/{len(_CASES)} checks passed" in capsys.readouterr().out


@pytest.mark.parametrize("fn,hint", [
    (_corner, "centre"),
    (_all_channels, "channel"),
    (_keeps_bias, "bias"),
    (_no_grad_missing, "no_grad"),
    (_hard_coded_3x3, "kernel"),
    (_scaled, "scale"),
    (lambda conv: 1 / 0, "ZeroDivisionError"),
    (lambda conv: None, "unchanged"),
    ("not a function", "function"),
])
def test_check_rejects_wrong_answers_helpfully(fn, hint, capsys):
    assert check_dirac_init(fn) is False  # never raises on a learner's mistake
    out = capsys.readouterr().out
    assert hint.lower() in out.lower(), out


# ------------------------------------------------------------------ the chapter's experiment helpers
def test_block_stack_and_identity_fit():
    torch.manual_seed(0)
    x = torch.rand(48, 4, 6, 6)
    zero = block_stack(4, 4, "identity", zero_init=True)
    assert relative_identity_error(zero, x) == 0.0
    assert len(block_stack(4, 6, "none")) == 3
    result = fit_identity(block_stack(4, 2, "identity"), x[:32], x[32:], steps=15, lr=0.05)
    assert set(result) == {"before", "after", "losses"} and len(result["losses"]) == 15
    assert result["after"] < result["before"]
    with pytest.raises(ValueError, match="even"):
        block_stack(4, 3)
    with pytest.raises(ValueError, match="steps"):
        fit_identity(block_stack(4, 2), x, x, steps=0, lr=0.1)
    with pytest.raises(ValueError, match="optimizer"):
        fit_identity(block_stack(4, 2), x, x, steps=1, lr=0.1, optimizer="lbfgs")


def test_loss_curve_and_dataset_loss():
    torch.manual_seed(0)
    x, y = torch.randn(40, 3, 8, 8), torch.arange(40) % 10
    loader = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 40, 16)]
    model = CifarResNet(8, widths=(4, 4, 4))
    losses = loss_curve(model, loader, steps=5, lr=0.05)
    assert len(losses) == 5 and all(math.isfinite(v) for v in losses)
    model.eval()
    stats = dataset_loss(model, loader)
    with torch.no_grad():
        logits = model(x)
    assert stats["loss"] == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-5)
    assert stats["err"] == pytest.approx((logits.argmax(1) != y).float().mean().item())
    with pytest.raises(ValueError, match="empty"):
        dataset_loss(model, [])
