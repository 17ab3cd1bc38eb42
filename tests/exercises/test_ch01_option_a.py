"""Chapter 1's exercise: the whole option-A shortcut module, graded by ``check_option_a_shortcut``
against ``skiplib.blocks.PadShortcut``."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from skiplib.blocks import PadShortcut
from skiplib.exercises import check_option_a_shortcut


class Good(nn.Module):
    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option A cannot reduce the channels ({in_channels} -> {out_channels})")
        self.extra, self.stride = out_channels - in_channels, stride

    def forward(self, x):
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.extra))


def with_forward(forward):
    """``Good`` whose forward is ``forward(self, x)``: a learner's attempt."""
    return type("Attempt", (Good,), {"forward": forward})


def with_init(init):
    """``Good`` whose ``__init__`` body is ``init(self, in_channels, out_channels, stride)`` after nn.Module's."""
    def __init__(self, in_channels, out_channels, stride):
        nn.Module.__init__(self)
        self.extra, self.stride = out_channels - in_channels, stride
        init(self, in_channels, out_channels, stride)

    return type("Attempt", (Good,), {"__init__": __init__})


def test_the_reference_solution_and_skiplib_pass(capsys):
    assert check_option_a_shortcut(Good)
    assert "6/6 checks passed" in capsys.readouterr().out
    assert check_option_a_shortcut(PadShortcut, verbose=False)  # the library is the reference


def sub(self, x):
    return x[:, :, ::self.stride, ::self.stride]


def channels(x, front, back):
    return F.pad(x, (0, 0, 0, 0, front, back))


EQUAL = "equal to skiplib.blocks.PadShortcut"
SHAPE = "output shape for every stride, channel increase and odd size"


@pytest.mark.parametrize("forward,failed,message", [
    (lambda self, x: channels(F.avg_pool2d(x, self.stride, ceil_mode=True), 0, self.extra), EQUAL,
     "you averaged 2x2 windows: option A subsamples"),
    (lambda self, x: channels(F.max_pool2d(x, self.stride, ceil_mode=True), 0, self.extra), EQUAL,
     "you max-pooled 2x2 windows"),
    (lambda self, x: channels(F.avg_pool2d(x, self.stride), 0, self.extra), SHAPE,
     "expected (2, 32, 4, 4), got (2, 32, 3, 3); for an odd size the output must have ceil(H / stride) rows"),
    (lambda self, x: channels(sub(self, x), self.extra, 0), EQUAL, "the zero channels are in front"),
    (lambda self, x: channels(sub(self, x), self.extra // 2, self.extra - self.extra // 2), EQUAL,
     "the zero channels are split between both ends"),
    (lambda self, x: channels(x[:, :, 1::self.stride, 1::self.stride], 0, self.extra), EQUAL,
     "the subsampling starts at row and column 1"),
    (lambda self, x: F.pad(sub(self, x), (0, self.extra)), SHAPE, "you padded the width instead of the channels"),
    (lambda self, x: F.pad(sub(self, x), (0, 0, 0, self.extra)), SHAPE, "you padded the height instead of the channels"),
    (lambda self, x: F.pad(sub(self, x), (0, 0, 0, 0, 0, 0, 0, self.extra)), SHAPE, "you padded the batch dimension"),
    (lambda self, x: channels(x[:, :, ::2, ::2], 0, self.extra), SHAPE, "the stride is fixed at 2"),
    (lambda self, x: channels(sub(self, x), 0, x.shape[1]), SHAPE, "the channels were doubled"),
    (lambda self, x: channels(x, 0, self.extra), SHAPE, "x was not subsampled"),
    (lambda self, x: torch.cat([sub(self, x), sub(self, x)], 1)[:, :x.shape[1] + self.extra], EQUAL,
     "the new channels are copies of x"),
    (lambda self, x: torch.cat([sub(self, x), torch.rand_like(sub(self, x))[:, :self.extra]], 1), EQUAL,
     "the new channels must be all zeros"),
])
def test_the_grader_names_the_forward_mistakes(forward, failed, message, capsys):
    assert not check_option_a_shortcut(with_forward(forward))
    out = capsys.readouterr().out
    assert f"✗ {failed}: " in out and message in out


def test_odd_sizes_are_graded_even_when_even_ones_pass(capsys):
    def floor_view(self, x):  # subsampling by reshaping: right for even sizes, fails for odd ones
        n, c, h, w = x.shape
        s = self.stride
        x = x[:, :, :h // s * s, :w // s * s].reshape(n, c, h // s, s, w // s, s)[:, :, :, 0, :, 0]
        return channels(x, 0, self.extra)

    assert not check_option_a_shortcut(with_forward(floor_view))
    out = capsys.readouterr().out
    assert "for x of shape (2, 16, 7, 7), 16 -> 32 channels, stride 2: expected (2, 32, 4, 4), got (2, 32, 3, 3)" in out


def _conv_shortcut(self, cin, cout, stride):
    self.proj = nn.Conv2d(cin, cout, 1, stride, bias=False)  # option B: a projection


def _zeros_buffer(self, cin, cout, stride):
    self.register_buffer("zeros", torch.zeros(1, cout - cin, 1, 1))


@pytest.mark.parametrize("init,failed,message", [
    (_conv_shortcut, "an nn.Module without parameters or buffers", "the module has parameters ['proj.weight']"),
    (_zeros_buffer, "an nn.Module without parameters or buffers", "the module stores buffers ['zeros']"),
    (lambda self, cin, cout, stride: None, "refuses a channel decrease",
     "Attempt(32, 16, 1) built a module: zero-padding can only add channels"),
])
def test_the_grader_names_parameters_buffers_and_a_missing_error(init, failed, message, capsys):
    assert not check_option_a_shortcut(with_init(init))
    out = capsys.readouterr().out
    assert f"✗ {failed}" in out and message in out


def _assert_more(self, cin, cout, stride):
    assert cout >= cin


def _vague(self, cin, cout, stride):
    if cout < cin:
        raise ValueError("bad channels")


@pytest.mark.parametrize("init,message", [
    (_assert_more, "32 -> 16 channels should raise a ValueError (a bad argument), not AssertionError"),
    (_vague, "the ValueError should say which channel counts were asked for (32 -> 16); it says: bad channels"),
])
def test_the_grader_wants_a_clear_value_error(init, message, capsys):
    assert not check_option_a_shortcut(with_init(init))
    out = capsys.readouterr().out
    assert "✗ refuses a channel decrease with a ValueError naming both counts" in out and message in out
    assert "5/6 checks passed" in out


def test_the_grader_names_a_changed_dtype_and_a_detached_output(capsys):
    def float32_zeros(self, x):
        x = sub(self, x)
        return torch.cat([x, torch.zeros(x.shape[0], self.extra, *x.shape[2:])], 1)

    assert not check_option_a_shortcut(with_forward(float32_zeros))
    out = capsys.readouterr().out
    assert "✗ keeps the input's dtype: for a torch.bfloat16 input the output is torch.float32" in out

    assert not check_option_a_shortcut(with_forward(lambda self, x: Good.forward(self, x).detach()))
    assert "no gradient can reach x: the output is detached" in capsys.readouterr().out


def test_an_untouched_stub_is_not_attempted(capsys):
    class MyPadShortcut(nn.Module):
        def __init__(self, in_channels, out_channels, stride):
            super().__init__()
            raise NotImplementedError

        def forward(self, x):
            raise NotImplementedError

    assert not check_option_a_shortcut(MyPadShortcut)
    out = capsys.readouterr().out
    assert "not attempted yet (0/6 checks passed)" in out and "✗" not in out
