"""Training and scoring a sequence model on Chapter 9's task (:class:`skiplib.data.sequences.SortTask`).

Adam with a constant learning rate after an optional linear warm-up, no gradient clipping (clipping
would hide the failures Chapter 9 is about), fresh batches drawn from one seeded generator. A run whose
loss turns non-finite stops there and is marked ``diverged`` rather than raising: diverging is
one of the outcomes the chapter measures.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from skiplib.checks import check_non_negative_ints, check_positive_ints
from skiplib.data.sequences import SortTask


def masked_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the scored positions only."""
    return F.cross_entropy(logits[mask], targets[mask])


def warmup_factor(step: int, warmup_steps: int) -> float:
    """The learning-rate multiplier at ``step`` (0-based): linear from 1/warmup_steps to 1, then 1."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / warmup_steps)


@torch.no_grad()
def score(model: nn.Module, task: SortTask, *, n: int = 1000, seed: int = 10_000,
          device: torch.device | str = "cpu") -> dict:
    """Loss, per-token accuracy and whole-answer accuracy on ``n`` held-out samples (seed ``seed``)."""
    was_training = model.training
    model.eval()
    inputs, targets, mask = (t.to(device) for t in task.batch(n, seed))
    logits = model(inputs)
    correct = (logits.argmax(-1) == targets) | ~mask
    out = {"loss": masked_loss(logits, targets, mask).item(),
           "token_acc": correct[mask].float().mean().item() if mask.any() else float("nan"),
           "seq_acc": correct.all(dim=1).float().mean().item()}
    model.train(was_training)
    return out


def fit_sequence(model: nn.Module, task: SortTask, *, steps: int, lr: float, batch_size: int = 64,
                 warmup_steps: int = 0, seed: int = 0, device: torch.device | str = "cpu",
                 log_every: int = 10) -> dict:
    """Train ``model`` for ``steps`` Adam steps; returns the training-loss curve (one point every
    ``log_every`` steps, each the mean of the steps since the last), whether the run diverged, and
    :func:`score` on held-out samples."""
    check_positive_ints(steps=steps, batch_size=batch_size, log_every=log_every)
    check_non_negative_ints(warmup_steps=warmup_steps, seed=seed)
    if not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98))
    gen = torch.Generator().manual_seed(seed)
    curve_steps, curve, window = [], [], []
    diverged = False
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * warmup_factor(step, warmup_steps)
        inputs, targets, mask = (t.to(device) for t in task.batch(batch_size, generator=gen))
        loss = masked_loss(model(inputs), targets, mask)
        if not math.isfinite(loss.item()):
            diverged = True
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        window.append(loss.item())
        if len(window) == log_every or step == steps - 1:
            curve_steps.append(step + 1)
            curve.append(sum(window) / len(window))
            window = []
    result = score(model, task, device=device) if not diverged else {
        "loss": float("nan"), "token_acc": float("nan"), "seq_acc": float("nan")}
    return {"steps": curve_steps, "train_loss": curve, "diverged": diverged, **{f"test_{k}": v for k, v in result.items()}}
