"""Chapter 2's Fixup exercise, graded by ``check_fixup_init``: the solution and skiplib's own
``fixup_init_`` pass, each common mistake fails with the hint that names it."""

import pytest
import torch

from skiplib.analysis.variance import fixup_init_
from skiplib.exercises import NOT_ATTEMPTED, check_fixup_init


def rescale(factor, zero_last=True, scale_last=False):
    def fn(blocks):
        with torch.no_grad():
            for b in blocks:
                b.conv1.weight.mul_(factor(len(blocks)))
                if zero_last:
                    b.conv2.weight.zero_()
                if scale_last:
                    b.conv2.weight.mul_(factor(len(blocks)))
    return fn


def without_no_grad(blocks):
    for b in blocks:
        b.conv1.weight.mul_(len(blocks) ** -0.5)


def redraw(blocks):
    with torch.no_grad():
        for b in blocks:
            torch.nn.init.kaiming_normal_(b.conv1.weight)
            b.conv2.weight.zero_()


def skipinit(blocks):
    with torch.no_grad():
        for b in blocks:
            b.scale.zero_()


def returns_a_copy(blocks):
    import copy
    new = copy.deepcopy(blocks)
    rescale(lambda L: L ** -0.5)(new)
    return new


def not_attempted(blocks):
    raise NotImplementedError


def test_the_solution_and_skiplib_pass(capsys):
    assert check_fixup_init(rescale(lambda L: L ** -0.5))
    assert check_fixup_init(fixup_init_)
    assert check_fixup_init(returns_a_copy)  # returning a new stack is allowed
    assert "4/4 checks passed" in capsys.readouterr().out


@pytest.mark.parametrize("fn, hint", [
    (rescale(lambda L: 1 / L), "scaled by 1/L"),
    (rescale(lambda L: (2 * L) ** -0.5), "L counts residual branches (blocks), not conv layers"),
    (rescale(lambda L: L ** -0.25), "the exponent is -1/(2m-2) = -1/2"),
    (rescale(lambda L: L ** 0.5), "divide by it instead"),
    (rescale(lambda L: 9 ** -0.5), "read L from len(blocks)"),
    (rescale(lambda L: L ** -0.5, zero_last=False), "conv2 must be zero"),
    (rescale(lambda L: L ** -0.5, zero_last=False, scale_last=True), "conv2 was rescaled too"),
    (rescale(lambda L: 0.0), "neither gets a gradient"),
    (redraw, "rather than drawing new ones"),
    (skipinit, "would be SkipInit, not Fixup"),
    (without_no_grad, "torch.no_grad()"),
])
def test_each_mistake_fails_with_its_hint(fn, hint, capsys):
    assert not check_fixup_init(fn)
    assert hint in capsys.readouterr().out


def test_not_attempted_and_not_callable(capsys):
    assert not check_fixup_init(not_attempted)
    assert NOT_ATTEMPTED in capsys.readouterr().out
    assert not check_fixup_init("fixup")
    assert "expected a function" in capsys.readouterr().out
