"""Learning-rate schedules of :func:`skiplib.train.fit`, and He et al.'s warm-up rule.

* ``onecycle`` (the chapters' default: 25% warm-up from lr/10, then cosine down), ``cosine`` and
  ``constant`` are functions of the fraction of training done;
* ``multistep`` (as torch's MultiStepLR) is He et al.'s (2016, Sec. 4.2) schedule, counted in
  optimiser steps (iterations): ``lr`` divided by 10 at each of ``lr_steps`` (32k and 48k of 64k);
* :class:`Warmup` is the paper's rule for ResNet-110: train at 0.01 until the training error is
  below 80% (about 400 iterations in the paper), then at the schedule's lr. Used by Chapter 1's
  paper preset (:mod:`skiplib.chapters.ch01_paper`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass

SCHEDULES = ("onecycle", "cosine", "constant", "multistep")


def check_lr_steps(schedule: str, lr_steps: Sequence[int], total: int) -> tuple[int, ...]:
    """``lr_steps`` as a tuple when they fit ``schedule`` and ``total`` optimiser steps: the ``step``
    schedule needs one or more increasing milestones inside the run; the other schedules take none."""
    steps = tuple(lr_steps or ())
    if schedule != "multistep":
        if steps:
            raise ValueError(f"lr_steps {list(steps)} need schedule='multistep', not {schedule!r}")
        return steps
    if not steps:
        raise ValueError("schedule 'multistep' needs lr_steps: the iterations at which lr is divided by 10, e.g. (32000, 48000)")
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in steps):
        raise ValueError(f"lr_steps must be positive ints (iterations), got {list(steps)}")
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError(f"lr_steps must increase, got {list(steps)}")
    if steps[-1] >= total:
        raise ValueError(f"lr step {steps[-1]} is not inside the run's {total} iterations: every lr step must be "
                         "smaller than the number of iterations")
    return steps


def lr_at(schedule: str, lr: float, step: int, total: int, lr_steps: Sequence[int] = (), factor: float = 0.1) -> float:
    """Learning rate at optimiser step ``step`` (counted from 0) of ``total``."""
    if schedule == "constant":
        return lr
    if schedule == "multistep":
        return lr * factor ** sum(step >= s for s in lr_steps)
    t = step / max(total, 1)
    if schedule == "cosine":
        return 0.5 * lr * (1 + math.cos(math.pi * t))
    warm = 0.25
    if t < warm:
        return lr * (0.1 + 0.9 * t / warm)
    return 0.5 * lr * (1 + math.cos(math.pi * (t - warm) / (1 - warm)))


@dataclass(frozen=True)
class Warmup:
    """Train at ``lr`` until the training error, averaged over the last ``window`` batches (in train
    mode, augmented, as the epoch's training error is), falls below ``until_err``; then use the
    schedule's lr. He et al. (2016) warm ResNet-110 up at 0.01 until the error is below 80%."""

    lr: float = 0.01
    until_err: float = 0.8
    window: int = 20  # batches: one batch of 128 is too noisy to decide on

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"warm-up lr must be positive, got {self.lr}")
        if not 0 < self.until_err <= 1:
            raise ValueError(f"warm-up until_err must be a training error in (0, 1], got {self.until_err}")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise ValueError(f"warm-up window must be a positive int (batches), got {self.window!r}")

    @classmethod
    def parse(cls, value: Warmup | dict | None) -> Warmup | None:
        """``value`` as a Warmup: one already, a dict of its fields, or None (no warm-up)."""
        if value is None or isinstance(value, Warmup):
            return value
        if not isinstance(value, dict) or set(value) - {"lr", "until_err", "window"}:
            raise ValueError(f"warmup must be a Warmup, None or a dict with keys lr, until_err, window; got {value!r}")
        return cls(**value)

    def to_dict(self) -> dict:
        return asdict(self)


class WarmupState:
    """Where a :class:`Warmup` stands during training: the recent batch errors and whether (after how
    many steps) it ended. Its state is checkpointed with the run, so a resumed run warms up the same."""

    def __init__(self, rule: Warmup) -> None:
        self.rule = rule
        self.errors: deque[float] = deque(maxlen=rule.window)
        self.steps = 0       # steps trained at the warm-up lr
        self.done = False

    def update(self, batch_err: float) -> None:
        """Record one warm-up step's batch error; end the warm-up once the window's mean is low enough."""
        self.steps += 1
        self.errors.append(batch_err)
        if len(self.errors) == self.rule.window and sum(self.errors) / len(self.errors) < self.rule.until_err:
            self.done = True

    def state_dict(self) -> dict:
        return {"errors": list(self.errors), "steps": self.steps, "done": self.done}

    def load_state_dict(self, state: dict) -> None:
        self.errors = deque((float(e) for e in state["errors"]), maxlen=self.rule.window)
        self.steps, self.done = int(state["steps"]), bool(state["done"])
