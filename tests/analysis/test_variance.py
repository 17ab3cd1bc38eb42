"""skiplib.analysis.variance (Chapter 2): the signal's mean square after each block of a residual
stack at initialisation, the blocks and initialisations that keep it flat, and bad input."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from skiplib.analysis import variance as V
from skiplib.blocks import BasicBlock


def images(n=8, size=8, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_block_mean_squares_matches_a_hand_loop():
    torch.manual_seed(0)
    stack = nn.Sequential(*(BasicBlock(4, 4) for _ in range(3)))
    x = torch.randn(6, 4, 5, 5)
    got = V.block_mean_squares(stack, x)
    h, want = x, [float((x ** 2).mean(dim=(0, 2, 3)).mean())]
    with torch.no_grad():
        for block in stack.train():
            h = block(h)
            want.append(float((h ** 2).mean(dim=(0, 2, 3)).mean()))
    assert len(got) == 4
    assert np.allclose(got, want, rtol=1e-6)


def test_block_mean_squares_restores_the_mode():
    stack = V.residual_stack("bn", 2, 4).eval()
    V.block_mean_squares(stack, torch.randn(4, 4, 5, 5))
    assert not stack.training


@pytest.mark.parametrize("kind", ["zero_gamma", "skipinit", "fixup"])
def test_a_branch_at_zero_is_exactly_flat(kind):
    v = V.variance_profile(kind, images(), 12, width=4)
    assert len(v) == 13
    assert np.array_equal(v, np.full_like(v, v[0]))
    assert math.isclose(v[0], 1.0, rel_tol=1e-5)  # the stem's output is scaled to mean square 1
    assert V.growth_factor(v) == pytest.approx(1.0)


def test_skipinit_and_fixup_stacks_are_the_identity():
    x = torch.rand(4, 6, 7, 7)
    for stack in (V.residual_stack("skipinit", 5, 6), V.residual_stack("fixup", 5, 6)):
        with torch.no_grad():
            assert torch.equal(stack(x), x)


def test_no_normalisation_grows_geometrically_by_about_two():
    # a wide stack on large maps, so that zero padding and sampling noise matter little
    v = V.variance_profile("he", images(16, 32), 16, width=64)
    g = V.growth_factor(v)
    assert 1.8 < g < 2.4, g
    assert v[-1] > 1.5 ** 16


def test_batch_norm_grows_about_linearly():
    v = V.variance_profile("bn", images(16, 16), 40, width=16)
    slope = np.polyfit(np.arange(41), v, 1)[0]
    assert 0.5 < slope < 1.2, slope
    assert 40 / 3 < v[-1] / v[0] < 3 * 40
    assert v[-1] / v[20] < v[20] / v[0]  # sub-geometric: the growth slows down


def test_measuring_leaves_running_statistics_untouched():
    stack = V.residual_stack("bn", 2, 4)
    before = {k: t.clone() for k, t in stack.state_dict().items()}
    V.block_mean_squares(stack, torch.randn(4, 4, 5, 5))
    changed = [k for k, t in stack.state_dict().items() if "running" in k and not torch.equal(t, before[k])]
    assert changed  # block_mean_squares itself runs BN in training mode ...
    v1 = V.variance_profile("bn", images(), 3, width=4)
    v2 = V.variance_profile("bn", images(), 3, width=4)
    assert np.array_equal(v1, v2)  # ... and variance_profile is deterministic


def test_fixup_init_scales_conv1_and_zeroes_conv2():
    torch.manual_seed(0)
    blocks = nn.Sequential(*(V.NormFreeBlock(3, 3) for _ in range(9)))
    w1 = [b.conv1.weight.detach().clone() for b in blocks]
    V.fixup_init_(blocks)
    for b, w in zip(blocks, w1):
        assert torch.allclose(b.conv1.weight, w / 3)
        assert b.conv2.weight.abs().max() == 0
        assert b.scale.item() == 1
    V.skipinit_(blocks)
    assert all(b.scale.item() == 0 for b in blocks)


@pytest.mark.parametrize("init", V.INITS)
def test_norm_free_resnet_has_no_batch_norm_and_runs(init):
    net = V.norm_free_resnet(8, init)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    out = net(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    if init == "fixup":
        assert out.abs().max() == 0  # the classifier starts at zero


@pytest.mark.parametrize("call, message", [
    (lambda: V.residual_stack("batchnorm", 4), "unknown kind 'batchnorm': allowed are 'he'"),
    (lambda: V.residual_stack("he", 0), "depth"),
    (lambda: V.variance_profile("he", torch.rand(3, 8, 8), 4), "images must be a batch (N, C, H, W)"),
    (lambda: V.block_mean_squares(V.residual_stack("bn", 2, 4), torch.rand(1, 4, 5, 5)), "at least 2 images"),
    (lambda: V.growth_factor([1.0]), "at least 2 positive finite numbers"),
    (lambda: V.growth_factor([1.0, 0.0, 2.0]), "at least 2 positive finite numbers"),
    (lambda: V.fixup_init_([BasicBlock(4, 4)]), "expected a non-empty sequence of NormFreeBlock, got ['BasicBlock']"),
    (lambda: V.skipinit_([]), "non-empty sequence of NormFreeBlock"),
    (lambda: V.norm_free_resnet(20, "zero"), "unknown init 'zero': allowed are 'he', 'skipinit', 'fixup'"),
])
def test_bad_input_says_what_is_allowed(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)


def test_overflow_is_reported_not_returned():
    stack = V.residual_stack("he", 40, 8).half()
    with pytest.raises(ValueError, match="overflowed torch.float16"):
        V.block_mean_squares(stack, torch.rand(2, 8, 6, 6).half())
