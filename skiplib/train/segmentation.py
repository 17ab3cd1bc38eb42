"""Training and evaluation for Chapter 6's segmentation models (``skiplib.train.fit`` is for classifiers).

:func:`fit_segmentation` is a small, seeded Adam loop in the spirit of ``fit``: a ``tqdm.auto``
progress bar, one :class:`skiplib.train.History` record per epoch (train loss, test loss, boundary
Dice and IoU, boundary F1, seconds), a cosine learning-rate decay, channels_last on CPU and CUDA.
The batch order comes from its own generator seeded with ``seed``, so two models trained with the
same seed see the same batches in the same order. With ``checkpoint`` it saves its state after every
epoch and resumes from it, as ``fit`` does. :func:`predict` returns label maps.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from skiplib.checks import check_positive_ints
from skiplib.data.cells import CellSet, boundary_f1, cell_f1, dice_iou
from skiplib.profile import default_device
from skiplib.train.checkpoints import cpu_bytes, fingerprint, load_checkpoint, restore_rng, rng_state, save_checkpoint
from skiplib.train.loop import History


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Logits ``[N, classes, H, W]`` (on the CPU) of ``model`` in eval mode. Chapter 6."""
    device = _device_of(model)
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            out.append(model(images[i:i + batch_size].to(device)).float().cpu())
    model.train(was_training)
    return torch.cat(out)


def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Label maps ``[N, H, W]`` (argmax over classes) of ``model`` in eval mode. Chapter 6."""
    return predict_logits(model, images, batch_size).argmax(1)


def evaluate_segmentation(model: nn.Module, data: CellSet, *, weight: Sequence[float] | None = None,
                          cells: bool = True, batch_size: int = 128) -> dict[str, float]:
    """Mean (weighted) cross-entropy ``loss``, boundary ``dice`` and ``iou``, ``boundary_f1`` and,
    with ``cells=True``, ``cell_f1`` of ``model`` on ``data``. Chapter 6."""
    logits = predict_logits(model, data.images, batch_size)
    w = None if weight is None else torch.tensor(weight, dtype=torch.float32)
    pred = logits.argmax(1)
    dice, iou = dice_iou(pred, data.masks)
    scores = {"loss": F.cross_entropy(logits, data.masks, weight=w).item(), "dice": dice, "iou": iou,
              "boundary_f1": boundary_f1(pred, data.masks)}
    if cells:
        scores["cell_f1"] = cell_f1(pred, data.masks)
    return scores


def fit_segmentation(model: nn.Module, train: CellSet, test: CellSet | None = None, *, epochs: int,
                     lr: float = 3e-3, batch_size: int = 32, weight: Sequence[float] | None = None,
                     seed: int = 0, device: str | torch.device | None = None, progress: bool = True,
                     desc: str | None = None, checkpoint: str | os.PathLike | None = None,
                     data: dict | None = None) -> History:
    """Train ``model`` with Adam (cosine decay from ``lr`` to 0) and pixel-wise cross-entropy,
    class-weighted by ``weight`` (one number per class), for ``epochs`` epochs; return a
    :class:`~skiplib.train.History` with ``epoch, train_loss, test_loss, dice, iou, boundary_f1,
    lr, seconds`` per epoch (test scores only with ``test``). With ``checkpoint`` (a path, e.g. from
    :func:`skiplib.train.run_checkpoint`) the state is saved after every epoch and a later call with
    the same path resumes after the last finished epoch, with the same numbers, as in
    :func:`skiplib.train.fit`; a checkpoint made for another model, recipe, ``seed`` or ``data``
    (a dict describing the cells, e.g. ``{"source": "make_cells", "seed": 0}``) is refused. Chapter 6."""
    check_positive_ints(epochs=epochs)
    if lr <= 0 or batch_size < 1:
        raise ValueError(f"lr and batch_size must be positive, got {lr!r} and {batch_size!r}")
    if len(train) < batch_size:
        raise ValueError(f"the training set ({len(train)} images) is smaller than one batch ({batch_size})")
    device = torch.device(device) if device is not None else default_device()
    fmt = torch.channels_last if device.type in ("cpu", "cuda") else torch.preserve_format
    model.to(device, memory_format=fmt)
    w = None if weight is None else torch.tensor(weight, dtype=torch.float32, device=device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    x_all, y_all = train.images.to(device), train.masks.to(device)
    steps = len(train) // batch_size  # drop the last partial batch: equal batches, BN-safe
    total, history, start_epoch = epochs * steps, History(), 0
    path = Path(checkpoint) if checkpoint is not None else None
    recipe = {"optimizer": "Adam", "lr": lr, "batch_size": batch_size, "schedule": "cosine", "epochs": epochs,
              "class_weight": None if weight is None else [float(v) for v in weight], "train_size": len(train)}
    fp = fingerprint(model, recipe, data, seed)
    state = load_checkpoint(path, fp, progress)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        history = History.from_dict(state["history"])
        start_epoch = len(history)
        g.set_state(cpu_bytes(state["generator"]))  # the batch order of the next epoch
        restore_rng(state, device)
    for epoch in range(start_epoch, epochs):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(train), generator=g).to(device)
        loss_sum = torch.zeros((), device=device)
        bar = tqdm(range(steps), desc=f"{desc or 'fit'} {epoch + 1}/{epochs}", disable=not progress, leave=False)
        for i in bar:
            step_lr = 0.5 * lr * (1 + math.cos(math.pi * (epoch * steps + i) / total))
            for group in opt.param_groups:
                group["lr"] = step_lr
            idx = order[i * batch_size:(i + 1) * batch_size]
            x = x_all[idx].contiguous(memory_format=fmt)
            loss = F.cross_entropy(model(x), y_all[idx], weight=w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
        record = {"epoch": epoch + 1, "train_loss": loss_sum.item() / steps}
        if not math.isfinite(record["train_loss"]):
            raise FloatingPointError(f"training diverged in epoch {epoch + 1}; try a lower lr")
        if test is not None:
            ev = evaluate_segmentation(model, test, weight=weight, cells=False)
            record.update(test_loss=ev.pop("loss"), **ev)
        record.update(lr=step_lr, seconds=time.perf_counter() - t0)
        history.records.append(record)
        if path is not None:
            save_checkpoint(path, {"fingerprint": fp, "epochs": epochs, "model": model.state_dict(),
                                   "optimizer": opt.state_dict(), "history": history.to_dict(),
                                   "generator": g.get_state(), **rng_state(device)})
    return history
