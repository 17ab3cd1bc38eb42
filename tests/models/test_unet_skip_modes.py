"""Chapter 6's control on the long skips: what a skip carries forward ("detached": the value, no
gradient) and what it carries back ("gradient_only": the gradient, no value), beside "full" and
"none". Exact equalities of outputs and gradients, parameter counts and errors."""

import pytest
import torch

from skiplib.blocks import Up
from skiplib.blocks.unet import SKIP_MODES, skip_mode
from skiplib.chapters.ch06_unet import skips_kept
from skiplib.models import count_parameters
from skiplib.models.unet import UNet

CONTROLS = ("detached", "gradient_only")


def _unet(skips, seed=0):
    torch.manual_seed(seed)
    return UNet(1, 2, base=4, depth=3, skips=skips, batch_norm=True)


def _zero_filled(model):
    """Hooks that hand every Up zeros in place of its skip; returns the handles."""
    return [up.register_forward_pre_hook(lambda m, inp: (inp[0], torch.zeros_like(inp[1]))) for up in model.ups]


def _cut_bottleneck_path(model):
    """Stop the gradient between the first encoder level and the rest of the encoder, so the
    encoder's first DoubleConv (``inc``) can get a gradient only through the level-0 skip."""
    return model.downs[0].register_forward_pre_hook(lambda m, inp: (inp[0].detach(),))


def test_modes_and_their_names():
    assert SKIP_MODES == ("full", "detached", "gradient_only", "none")
    assert skip_mode(True) == "full" and skip_mode(False) == "none"
    assert all(skip_mode(m) == m for m in SKIP_MODES)
    model = _unet(("none", True, "gradient_only"))
    assert model.skip_modes == ("none", "full", "gradient_only") and model.skips == (False, True, True)
    assert [up.skip_mode for up in model.ups] == ["gradient_only", "full", "none"]  # ups run bottom-up
    assert _unet(False).skip_modes == ("none",) * 3 and _unet(True).skips == (True,) * 3  # the boolean API


def test_controls_have_the_full_unets_parameters_and_state_dict_keys():
    full, none = _unet(True), _unet(False)
    for mode in CONTROLS:
        control = _unet(mode)
        assert count_parameters(control) == count_parameters(full)
        assert control.state_dict().keys() == full.state_dict().keys()
    # "none" drops the skip's input channels: 9 c^2 weights per level (BN, so no conv biases)
    assert count_parameters(full) - count_parameters(none) == sum(9 * (4 * 2**i) ** 2 for i in range(3))
    assert count_parameters(_unet(("detached", "none", "gradient_only"))) == count_parameters(full) - 9 * 8 * 8


@pytest.mark.parametrize("train", [True, False])
def test_detached_forward_equals_full(train):
    full, detached = _unet(True), _unet("detached")
    detached.load_state_dict(full.state_dict())
    full.train(train)
    detached.train(train)
    x = torch.randn(3, 1, 20, 23)
    assert torch.equal(detached(x), full(x))


@pytest.mark.parametrize("train", [True, False])
def test_gradient_only_forward_equals_a_zero_filled_skip(train):
    full, grad_only = _unet(True), _unet("gradient_only")
    grad_only.load_state_dict(full.state_dict())
    full.train(train)
    grad_only.train(train)
    x = torch.randn(3, 1, 20, 23)
    handles = _zero_filled(full)
    want = full(x)
    for h in handles:
        h.remove()
    assert torch.equal(grad_only(x), want)
    assert not torch.equal(full(x), want)  # the zeros do change the full U-Net's output


def test_none_computes_what_a_zero_filled_skip_computes():
    # the documented choice: a "none" skip removes the input channels; zeros there would give the same function
    torch.manual_seed(0)
    full, none = Up(8, 4), Up(8, 4, skip="none")
    state = full.state_dict()
    state["conv.double_conv.0.weight"] = state["conv.double_conv.0.weight"][:, 4:]  # the upsampled half
    none.load_state_dict(state)
    x1, x2 = torch.randn(2, 8, 4, 5), torch.randn(2, 4, 9, 11)
    assert torch.allclose(none(x1, x2), full(x1, torch.zeros_like(x2)), atol=1e-6)


def _up_grads(mode, x2_value):
    torch.manual_seed(0)
    up = Up(8, 4, skip=mode)
    x1 = torch.randn(2, 8, 4, 5, requires_grad=True)
    x2 = x2_value.clone().requires_grad_(True)
    out = up(x1, x2)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return up, out, x1.grad, x2.grad


def test_skip_gradients_at_one_up():
    skip = torch.randn(2, 4, 9, 11)
    _, out_full, _, g_full = _up_grads("full", skip)
    _, out_det, g1_det, g_det = _up_grads("detached", skip)
    assert torch.equal(out_det, out_full) and g_det is None and g1_det is not None  # value on, gradient off
    assert g_full is not None and g_full.abs().sum() > 0
    # gradient_only: forward and backward exactly those of a full skip fed zeros, the gradient going to x2
    up_g, out_g, g1_g, g_g = _up_grads("gradient_only", skip)
    _, out_zero, g1_zero, g_zero = _up_grads("full", torch.zeros_like(skip))
    assert torch.equal(out_g, out_zero) and torch.equal(g1_g, g1_zero)
    assert torch.equal(g_g, g_zero) and g_g.abs().sum() > 0
    # the weights that read the skip see zeros, so they get an exactly zero gradient and keep their start values
    first = up_g.conv.double_conv[0].weight.grad
    assert torch.equal(first[:, :4], torch.zeros_like(first[:, :4])) and first[:, 4:].abs().sum() > 0


@pytest.mark.parametrize("mode, reaches", [("full", True), ("gradient_only", True), ("detached", False)])
def test_gradient_reaches_the_first_encoder_conv_through_the_skip(mode, reaches):
    model = _unet(mode)
    hook = _cut_bottleneck_path(model)
    x = torch.randn(2, 1, 16, 16)
    model(x).square().mean().backward()
    hook.remove()
    grad = model.inc.double_conv[0].weight.grad
    if reaches:
        assert grad is not None and grad.abs().sum() > 0
    else:
        assert grad is None  # nothing reaches it: the bottleneck path is cut, the skip is detached
    assert model.downs[0].maxpool_conv[1].double_conv[0].weight.grad is not None  # the encoder below still learns


def test_bad_modes_and_lengths_raise():
    with pytest.raises(ValueError, match=r"one of 'full', 'detached', 'gradient_only', 'none'; got 'half'"):
        Up(8, 4, skip="half")
    with pytest.raises(ValueError, match=r"got 1"):
        Up(8, 4, skip=1)
    with pytest.raises(ValueError, match=r"one of 'full'.*got 'Detached'"):
        UNet(depth=3, skips="Detached")
    with pytest.raises(ValueError, match=r"one bool per level .* 3 entries for depth=3.*got \('full', 'detached'\)"):
        UNet(depth=3, skips=("full", "detached"))
    with pytest.raises(ValueError, match=r"the modes are 'full', 'detached', 'gradient_only', 'none'; got \(True, 'x'"):
        UNet(depth=3, skips=(True, "x", False))
    with pytest.raises(ValueError, match="one bool per level"):
        UNet(depth=3, skips=1)


def test_skips_kept_names_the_modes():
    assert skips_kept((True, False, "full"), 64) == "64², 16²"
    assert skips_kept(("detached", "none", "gradient_only"), 64) == "64² detached, 16² gradient only"
    assert skips_kept(("none", False), 32) == "none"
    with pytest.raises(ValueError, match="got 'bogus'"):
        skips_kept(("bogus",), 32)
