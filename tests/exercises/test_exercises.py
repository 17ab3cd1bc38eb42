import time

import torch
import torch.nn.functional as F

from skiplib.exercises import check_pad_shortcut, run_checks


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
    assert "longer than" in capsys.readouterr().out
