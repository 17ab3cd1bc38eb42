"""Chapter 9's sorting task: deterministic per seed, answers correct, the scored positions right."""

from __future__ import annotations

import pytest
import torch

from skiplib.data.sequences import SortTask


def test_same_seed_same_samples_other_seed_other_samples():
    task = SortTask(6, 10)
    assert torch.equal(task.sequences(50, seed=3), task.sequences(50, seed=3))
    assert not torch.equal(task.sequences(50, seed=3), task.sequences(50, seed=4))


def test_a_generator_gives_a_reproducible_stream_of_fresh_batches():
    task = SortTask(5, 7)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    first, second = task.sequences(20, generator=g1), task.sequences(20, generator=g1)
    assert not torch.equal(first, second)
    assert torch.equal(first, task.sequences(20, generator=g2))
    assert torch.equal(second, task.sequences(20, generator=g2))


@pytest.mark.parametrize("length, n_symbols", [(8, 10), (3, 2), (12, 50)])
def test_answers_are_the_sorted_inputs(length, n_symbols):
    task = SortTask(length, n_symbols)
    seq = task.sequences(200, seed=1)
    assert seq.shape == (200, 2 * length + 1)
    x, sep, y = seq[:, :length], seq[:, length], seq[:, length + 1:]
    assert (sep == n_symbols).all()
    assert x.min() >= 0 and x.max() < n_symbols
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        assert row_y == sorted(row_x)


def test_batch_scores_exactly_the_answer_tokens():
    task = SortTask(4, 10)
    inputs, targets, mask = task.batch(3, seed=0)
    assert inputs.shape == targets.shape == mask.shape == (3, task.block_size)
    seq = task.sequences(3, seed=0)
    assert torch.equal(inputs, seq[:, :-1]) and torch.equal(targets, seq[:, 1:])
    assert torch.equal(targets[mask].view(3, 4), seq[:, 5:])  # the scored targets are y_1 ... y_n
    assert mask.sum() == 3 * 4


def test_bad_arguments_say_what_is_allowed():
    with pytest.raises(ValueError, match="length"):
        SortTask(0, 10)
    with pytest.raises(ValueError, match="exactly one of seed"):
        SortTask().sequences(4)
    with pytest.raises(ValueError, match="exactly one of seed"):
        SortTask().sequences(4, 1, generator=torch.Generator())
