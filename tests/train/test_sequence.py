"""Training a sequence model on Chapter 9's task: learning, determinism, divergence, warm-up, errors."""

from __future__ import annotations

import math

import pytest
import torch

from skiplib.data.sequences import SortTask
from skiplib.models.transformer import Transformer, TransformerConfig
from skiplib.train.sequence import fit_sequence, masked_loss, score, warmup_factor

TASK = SortTask(4, 5)


def model(wiring: str = "pre_ln", n_layer: int = 2) -> Transformer:
    torch.manual_seed(0)
    return Transformer(TransformerConfig(TASK.vocab_size, TASK.block_size, n_layer, 2, 16, wiring))


def test_masked_loss_ignores_unscored_positions():
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 2] = 50.0  # a confident wrong answer at an unscored position changes nothing
    targets = torch.tensor([[0, 1, 1]])
    mask = torch.tensor([[False, True, True]])
    assert masked_loss(logits, targets, mask).item() == pytest.approx(math.log(4))


def test_training_lowers_the_loss_and_is_deterministic():
    before = score(model(), TASK, n=200)["loss"]
    a = fit_sequence(model(), TASK, steps=60, lr=3e-3, batch_size=32, log_every=20)
    b = fit_sequence(model(), TASK, steps=60, lr=3e-3, batch_size=32, log_every=20)
    assert a == b
    assert a["steps"] == [20, 40, 60] and len(a["train_loss"]) == 3
    assert not a["diverged"]
    assert a["test_loss"] < before - 0.3


def test_warmup_factor_is_linear_then_one():
    assert [warmup_factor(s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0


def test_a_diverging_run_is_reported_not_raised():
    m = model()
    with torch.no_grad():
        m.lm_head.weight.fill_(float("nan"))
    out = fit_sequence(m, TASK, steps=5, lr=1e-3, batch_size=8)
    assert out["diverged"] and out["train_loss"] == []
    assert math.isnan(out["test_loss"])


def test_score_counts_whole_answers():
    perfect = score(model(), TASK, n=50)
    assert 0.0 <= perfect["seq_acc"] <= perfect["token_acc"] <= 1.0


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps"), ({"lr": 0.0}, "lr must be a positive number"), ({"warmup_steps": -1}, "warmup_steps"),
])
def test_bad_arguments_say_what_is_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_sequence(model(), TASK, **{"steps": 2, "lr": 1e-3, **kwargs})
