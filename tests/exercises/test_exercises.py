import time

import pytest
import torch
import torch.nn.functional as F

from skiplib.blocks import Bottleneck, DenseLayer
from skiplib.blocks import Up as skiplib_Up
from skiplib.exercises import (
    _runner,
    check_bottleneck,
    check_dense_layer,
    check_dirac_init,
    check_pad_shortcut,
    check_up_step,
    run_checks,
)


def good(x, out_channels, stride):
    x = x[:, :, ::stride, ::stride]
    return F.pad(x, (0, 0, 0, 0, 0, out_channels - x.shape[1]))


def test_accepts_correct_answer(capsys):
    assert check_pad_shortcut(good)
    assert "6/6 checks passed" in capsys.readouterr().out


def test_rejects_wrong_subsampling_with_hint(capsys):
    def off_by_one(x, out_channels, stride):
        x = x[:, :, 1::stride, 1::stride]
        return F.pad(x, (0, 0, 0, 0, 0, out_channels - x.shape[1]))

    assert not check_pad_shortcut(off_by_one)
    out = capsys.readouterr().out
    assert "✗ old channels carried through" in out and "x[:, :, ::2, ::2]" in out


def test_rejects_random_padding(capsys):
    def noisy(x, out_channels, stride):
        x = x[:, :, ::stride, ::stride]
        return torch.cat([x, torch.randn(x.shape[0], out_channels - x.shape[1], *x.shape[2:])], 1)

    assert not check_pad_shortcut(noisy)
    assert "new channels must be all zeros" in capsys.readouterr().out


def test_learner_exception_is_reported_not_raised(capsys):
    def unfinished(x, out_channels, stride):
        raise NotImplementedError

    assert not check_pad_shortcut(unfinished)
    assert "raised NotImplementedError" in capsys.readouterr().out


def test_endless_loop_is_bounded(capsys):
    def spin():
        while True:
            time.sleep(0.01)

    t0 = time.perf_counter()
    assert not run_checks("loop", [("terminates", spin)], time_limit=0.5)
    assert time.perf_counter() - t0 < 5
    assert "stopped after 0.5 seconds, the time limit of a check" in capsys.readouterr().out


# ----------------------------------------------------------------- what a learner reads when their code fails
def _spin(*args, **kwargs):
    while True:
        time.sleep(0.01)


def _dense_layer_with(forward):
    """A dense layer (skiplib's parameters) whose forward is ``forward``: a learner's attempt."""
    class Attempt(DenseLayer):
        pass

    Attempt.forward = forward
    return Attempt


def test_endless_loop_inside_a_grader_that_catches_errors_is_reported_in_words(monkeypatch, capsys):
    # check_dirac_init and check_dense_layer turn a learner's exception into a hint with `except
    # Exception`; the time limit must get through that and be reported as a time limit.
    monkeypatch.setattr(_runner, "TIME_LIMIT", 0.3)
    assert not check_dirac_init(_spin)
    assert not check_dense_layer(_dense_layer_with(_spin))
    out = capsys.readouterr().out
    assert "stopped after 0.3 seconds, the time limit of a check" in out
    assert "_Timeout" not in out


def test_untouched_up_step_is_not_attempted(capsys):
    class Up(skiplib_Up):
        def forward(self, x1, x2):
            raise NotImplementedError

    assert not check_up_step(Up)
    out = capsys.readouterr().out
    assert "not attempted" in out and "never applied" not in out


@pytest.mark.parametrize("returned", [lambda out: (out,), lambda out: None])
def test_a_forward_that_returns_no_tensor_is_reported_as_such(returned, capsys):
    def forward(self, x):
        return returned(Bottleneck.forward(self, x))

    class Attempt(Bottleneck):
        pass

    Attempt.forward = forward
    assert not check_bottleneck(Attempt)
    out = capsys.readouterr().out
    assert "the check could not use what your code gave back" in out
    assert "exercises" not in out and " in shape_check)" not in out  # no line of the grader


def test_an_error_torch_raises_in_learner_code_points_at_the_learners_line(capsys):
    class Attempt(Bottleneck):
        def forward(self, x):
            return self.conv3(x)  # wrong: conv3 expects the bottleneck's `planes` channels

    line = Attempt.forward.__code__.co_firstlineno + 1
    assert not check_bottleneck(Attempt)
    out = capsys.readouterr().out
    assert "raised RuntimeError: Given groups=1" in out and f"(line {line} in forward)" in out
    assert "_conv_forward" not in out  # torch's own frame is not the learner's
