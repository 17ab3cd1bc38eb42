"""Training and evaluation: ``fit`` and ``evaluate``, used by every chapter that trains.

``fit`` is a plain SGD loop made safe for learners: a ``tqdm.auto`` progress bar, one
history record per epoch, a checkpoint after every epoch that a second call resumes from
(a Colab disconnect loses at most one epoch, and the resumed run gives the same numbers),
AMP on CUDA (bf16 where the GPU has it, else fp16 with a gradient scaler; the CPU trains in fp32),
channels_last on CUDA and CPU, and an optional ``torch.compile``. Training error is averaged over the epoch's batches in
train mode with augmentation, as in He et al.'s curves; test error is measured in eval mode.

:func:`~skiplib.train.checkpoints.checkpoint_dir` and :func:`~skiplib.train.checkpoints.run_checkpoint`
say where the chapters' checkpoints live. Every checkpoint carries a fingerprint of what
it is for (model, recipe, data, seed, skiplib version); one made for another run is refused.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from skiplib.checks import check_positive_ints
from skiplib.profile import default_device
from skiplib.train.checkpoints import fingerprint, load_checkpoint, restore_rng, rng_state, save_checkpoint
from skiplib.train.schedule import SCHEDULES, Warmup, WarmupState, check_lr_steps, lr_at


@dataclass
class History:
    """Per-epoch records of a ``fit`` run: epoch, train_loss, train_err, test_loss, test_err, lr, seconds."""

    records: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def column(self, key: str) -> list[float]:
        """One metric across epochs, e.g. ``history.column("train_err")``."""
        return [r[key] for r in self.records]

    @property
    def last(self) -> dict:
        """The final epoch's record."""
        if not self.records:
            raise ValueError("the history is empty: no epoch has finished yet")
        return self.records[-1]

    def to_dict(self) -> dict:
        return {"records": self.records}

    @classmethod
    def from_dict(cls, d: dict) -> History:
        return cls(records=list(d["records"]))


def amp_dtype(device: torch.device) -> torch.dtype:
    """The autocast dtype on ``device``: bfloat16 on CUDA GPUs that compute in it natively (Ampere and
    later: no gradient scaler needed), float16 on older ones (a T4), bfloat16 elsewhere (AMP is off there)."""
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 0):
        return torch.float16
    return torch.bfloat16


def evaluate(model: nn.Module, loader, device: str | torch.device | None = None, *, amp: bool | None = None) -> dict:
    """Mean cross-entropy loss and error rate of ``model`` (in eval mode) over ``loader``.
    ``amp`` (autocast) defaults to on for CUDA only."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    amp = device.type == "cuda" if amp is None else amp
    dtype = amp_dtype(device) if amp and device.type == "cuda" else None
    was_training = model.training
    model.eval()
    total_loss, wrong, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = model(x)
            total_loss += F.cross_entropy(logits.float(), y, reduction="sum").item()
            wrong += (logits.argmax(1) != y).sum().item()
            n += y.numel()
    model.train(was_training)
    if n == 0:
        raise ValueError("evaluate() got an empty loader: no batches to score")
    return {"loss": total_loss / n, "err": wrong / n}


def fit(
    model: nn.Module,
    train_loader,
    test_loader=None,
    *,
    epochs: int | None = None,
    lr: float = 0.1,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 5e-4,
    schedule: str = "onecycle",
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    amp: bool | None = None,
    channels_last: bool | None = None,
    progress: bool = True,
    desc: str | None = None,
    data: dict | None = None,
    iterations: int | None = None,
    lr_steps: Sequence[int] = (),
    warmup: Warmup | dict | None = None,
    compile: bool = False,
) -> History:
    """Train ``model`` with SGD for ``epochs`` epochs (or ``iterations`` optimiser steps) and return
    its per-epoch :class:`History`.

    ``train_loader`` yields (x, y) batches and has ``len``; if it also has ``state_dict`` /
    ``load_state_dict`` (as :class:`skiplib.data.DeviceLoader` does), its shuffling state is
    checkpointed too. With ``checkpoint`` set (a path, e.g. from :func:`run_checkpoint`), the state
    (weights, optimiser, loader, RNGs) is saved after every epoch and a later call with the same
    path resumes after the last finished epoch with the same numbers as an uninterrupted run (a
    finished run just returns its history). The checkpoint records what it is for (the model's
    layout, the recipe, ``data``, the skiplib version) and one made for another run is refused with
    a ValueError naming each difference. ``data`` describes the training data, e.g. the info dict of
    :func:`skiplib.data.cifar10_loaders` with the loaders' seed (``{**info, "seed": seed}``).
    ``amp`` defaults to on for CUDA only (bf16, or fp16 with a gradient scaler on GPUs without bf16:
    :func:`amp_dtype`); ``channels_last`` to on for CUDA and CPU (oneDNN's convolutions skip a layout
    reorder with it: about 20% faster on 2 CPU cores). ``compile`` trains through ``torch.compile(model)``
    (the checkpoint holds the plain model's weights either way).

    He et al.'s recipe (Chapter 1's paper preset): ``iterations`` stops after that many optimiser
    steps (the last epoch may be cut short; each record then has ``step``, the steps done),
    ``schedule="multistep"`` divides lr by 10 at each of ``lr_steps`` (iterations), and ``warmup`` (a
    :class:`~skiplib.train.schedule.Warmup` or its dict) trains at a small lr until the training error
    falls below a threshold (records then have ``warmup_steps``).
    """
    if (epochs is None) == (iterations is None):
        raise ValueError(f"fit needs epochs or iterations, exactly one of them; got epochs={epochs!r}, "
                         f"iterations={iterations!r}")
    check_positive_ints(**({"epochs": epochs} if iterations is None else {"iterations": iterations}))
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}: allowed values are {', '.join(SCHEDULES)}")
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    warm = Warmup.parse(warmup)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError("the training loader yields no batches (is the subset smaller than the batch size with drop_last?)")
    if iterations is not None:
        epochs = -(-iterations // steps_per_epoch)
    total_steps = iterations if iterations is not None else epochs * steps_per_epoch
    lr_steps = check_lr_steps(schedule, lr_steps, total_steps)
    device = torch.device(device) if device is not None else default_device()
    amp = device.type == "cuda" if amp is None else amp
    dtype = amp_dtype(device) if amp and device.type == "cuda" else None
    channels_last = device.type in ("cuda", "cpu") if channels_last is None else channels_last
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    # bf16 has float32's range: only fp16 needs its loss scaled
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    history, start_epoch = History(), 0
    warm_state = WarmupState(warm) if warm is not None else None

    path = Path(checkpoint) if checkpoint is not None else None
    recipe = {"optimizer": "SGD", "lr": lr, "momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay,
              "schedule": schedule, "epochs": epochs, "steps_per_epoch": steps_per_epoch}
    # only what a run sets: the recipes (and checkpoints) of the chapters' epoch-based runs stay as they were
    recipe.update({k: v for k, v in (("iterations", iterations), ("lr_steps", list(lr_steps)),
                                     ("warmup", warm.to_dict() if warm else None)) if v})
    fp = fingerprint(model, recipe, data)  # before training: a bad ``data`` fails at once
    state = load_checkpoint(path, fp, progress)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if state["scaler"]:  # empty when saved without fp16 AMP (e.g. on the CPU): nothing to restore
            scaler.load_state_dict(state["scaler"])
        history = History.from_dict(state["history"])
        start_epoch = len(history)
        if hasattr(train_loader, "load_state_dict"):
            train_loader.load_state_dict(state["loader"])
        if warm_state is not None:
            warm_state.load_state_dict(state["warmup"])
        restore_rng(state, device)

    step_model = torch.compile(model) if compile else model  # shares the parameters: the optimiser sees them
    for epoch in range(start_epoch, epochs):
        model.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        wrong = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        first = epoch * steps_per_epoch
        n_steps = min(steps_per_epoch, total_steps - first)
        bar = tqdm(train_loader, desc=f"{desc or 'fit'} {epoch + 1}/{epochs}", disable=not progress, leave=False,
                   total=n_steps)
        for i, (x, y) in enumerate(bar):
            if i == n_steps:  # ``iterations`` ends inside this epoch
                break
            warming = warm_state is not None and not warm_state.done
            step_lr = warm.lr if warming else lr_at(schedule, lr, first + i, total_steps, lr_steps)
            for g in opt.param_groups:
                g["lr"] = step_lr
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = step_model(x)
                loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            # accumulate on the device: no host sync per batch
            loss_sum += loss.detach() * y.numel()
            batch_wrong = (logits.detach().argmax(1) != y).sum()
            wrong += batch_wrong
            seen += y.numel()
            if warming:  # a host sync per step, only for the few hundred warm-up steps
                warm_state.update(batch_wrong.item() / y.numel())
        record = {"epoch": epoch + 1, "train_loss": loss_sum.item() / seen, "train_err": wrong.item() / seen}
        if not math.isfinite(record["train_loss"]):
            raise FloatingPointError(f"training diverged in epoch {epoch + 1} (loss {record['train_loss']}); try a lower lr")
        if test_loader is not None:
            ev = evaluate(model, test_loader, device)
            record.update(test_loss=ev["loss"], test_err=ev["err"])
        record.update(lr=step_lr, seconds=time.perf_counter() - t0)
        if iterations is not None or schedule == "multistep":
            record["step"] = first + n_steps
        if warm_state is not None:
            record["warmup_steps"] = warm_state.steps
        history.records.append(record)
        if path is not None:
            save_checkpoint(path, {
                "fingerprint": fp,
                "epochs": epochs,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scaler": scaler.state_dict(),
                "history": history.to_dict(),
                "loader": train_loader.state_dict() if hasattr(train_loader, "state_dict") else None,
                **({"warmup": warm_state.state_dict()} if warm_state is not None else {}),
                **rng_state(device),
            })
    return history
