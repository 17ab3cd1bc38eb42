"""Training and evaluation: ``fit`` and ``evaluate``, used by every chapter that trains.

``fit`` is a plain SGD loop made safe for learners: a ``tqdm.auto`` progress bar, one
history record per epoch, a checkpoint after every epoch that a second call resumes from
(a Colab disconnect loses at most one epoch, and the resumed run gives the same numbers),
AMP on CUDA and channels_last on CUDA and CPU. Training error is averaged over the epoch's batches in
train mode with augmentation, as in He et al.'s curves; test error is measured in eval mode.

:func:`checkpoint_dir` and :func:`run_checkpoint` say where the chapters' checkpoints live.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from skiplib import __version__
from skiplib.data import data_dir
from skiplib.profile import default_device

SCHEDULES = ("onecycle", "cosine", "constant")


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
    def from_dict(cls, d: dict) -> "History":
        return cls(records=list(d["records"]))


def _lr_at(schedule: str, lr: float, step: int, total: int) -> float:
    """Learning rate at optimiser step ``step`` of ``total`` (one-cycle: 25% warm-up, cosine down)."""
    if schedule == "constant":
        return lr
    t = step / max(total, 1)
    if schedule == "cosine":
        return 0.5 * lr * (1 + math.cos(math.pi * t))
    warm = 0.25
    if t < warm:
        return lr * (0.1 + 0.9 * t / warm)
    return 0.5 * lr * (1 + math.cos(math.pi * (t - warm) / (1 - warm)))


def evaluate(model: nn.Module, loader, device: str | torch.device | None = None, *, amp: bool | None = None) -> dict:
    """Mean cross-entropy loss and error rate of ``model`` (in eval mode) over ``loader``.
    ``amp`` (autocast) defaults to on for CUDA only."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    amp = device.type == "cuda" if amp is None else amp
    was_training = model.training
    model.eval()
    total_loss, wrong, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
                logits = model(x)
            total_loss += F.cross_entropy(logits.float(), y, reduction="sum").item()
            wrong += (logits.argmax(1) != y).sum().item()
            n += y.numel()
    model.train(was_training)
    if n == 0:
        raise ValueError("evaluate() got an empty loader: no batches to score")
    return {"loss": total_loss / n, "err": wrong / n}


_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def checkpoint_dir() -> Path:
    """Where training checkpoints live: ``$SKIPLIB_CHECKPOINTS`` if set, else
    ``skiplib.data.data_dir() / "checkpoints"`` (``~/.cache/skiplib/checkpoints`` by default);
    created if missing. Used from Chapter 1 onward.

    On Colab a kernel restart keeps ``~/.cache``, so a restarted notebook resumes its runs; a
    runtime reset (or a disconnect that recycles the machine) does not, unless ``SKIPLIB_DATA`` or
    ``SKIPLIB_CHECKPOINTS`` points into a mounted Google Drive folder.
    """
    env = os.environ.get("SKIPLIB_CHECKPOINTS")
    path = Path(env).expanduser() if env else data_dir() / "checkpoints"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _check_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or name.startswith("."):
        raise ValueError(f"{what} {name!r} is not a safe file name: use letters, digits, '_', '.' and '-' "
                         "only, not starting with '.'")


def run_checkpoint(experiment: str, cfg: dict, label: str) -> Path:
    """The checkpoint file of run ``label`` of ``experiment`` with settings ``cfg``:
    ``checkpoint_dir() / f"{experiment}-{key}" / f"{label}.pt"``. ``key`` is a short hash of
    ``cfg`` and the skiplib version, so runs with other settings (or made by another version)
    never resume each other; pass it as ``fit(..., checkpoint=...)``. Used from Chapter 1 onward.

    On Colab a kernel restart keeps ``~/.cache``; a runtime reset does not, unless ``SKIPLIB_DATA``
    or ``SKIPLIB_CHECKPOINTS`` points into a mounted Google Drive folder.
    """
    _check_name("experiment", experiment)
    _check_name("label", label)
    if not isinstance(cfg, dict):
        raise ValueError(f"cfg must be a dict of the run's settings, got {type(cfg).__name__}")
    # default=str: devices, paths and the like hash by their printed form
    text = json.dumps(cfg, sort_keys=True, default=str) + __version__
    key = hashlib.sha1(text.encode()).hexdigest()[:10]
    return checkpoint_dir() / f"{experiment}-{key}" / f"{label}.pt"


def _save(path: Path, state: dict) -> None:
    # write then rename, so a disconnect mid-write never leaves a corrupt checkpoint
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _rng_state(device: torch.device) -> dict:
    """The global RNG states to checkpoint: the CPU one, and the training GPU's on CUDA."""
    return {"torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _cpu_bytes(state: torch.Tensor) -> torch.Tensor:
    # torch.set_rng_state and torch.cuda.set_rng_state take only CPU uint8 tensors (a TypeError
    # otherwise), whatever device the checkpoint was loaded onto
    return state.to("cpu", torch.uint8)


def _restore_rng(state: dict, device: torch.device) -> None:
    """Restore what :func:`_rng_state` saved (a CUDA state only when training on CUDA again)."""
    torch.set_rng_state(_cpu_bytes(state["torch_rng"]))
    cuda_rng = state.get("cuda_rng")  # absent in checkpoints made before it was saved
    if cuda_rng is not None and device.type == "cuda":
        torch.cuda.set_rng_state(_cpu_bytes(cuda_rng), device)


def _load_checkpoint(path: Path | None, epochs: int, progress: bool) -> dict | None:
    """The saved state at ``path`` (None when there is none yet), checked to be for ``epochs`` epochs."""
    if path is None or not path.exists():
        return None
    # map to the CPU: RNG and generator states must be CPU tensors, and load_state_dict moves
    # weights and optimiser state to the model's device. weights_only: a checkpoint holds only
    # tensors, dicts, lists and numbers, so nothing in it can run code when loaded.
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["epochs"] != epochs:
        raise ValueError(
            f"checkpoint {path} was made for a {state['epochs']}-epoch run, not {epochs}; "
            "delete it or pass another path to start afresh"
        )
    if progress:
        done = len(state["history"]["records"])
        print(f"{'finished run loaded' if done == epochs else 'resumed'} from {path} after epoch {done}/{epochs}")
    return state


def fit(
    model: nn.Module,
    train_loader,
    test_loader=None,
    *,
    epochs: int,
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
) -> History:
    """Train ``model`` with SGD for ``epochs`` epochs and return its per-epoch :class:`History`.

    ``train_loader`` yields (x, y) batches and has ``len``; if it also has ``state_dict`` /
    ``load_state_dict`` (as :class:`skiplib.data.DeviceLoader` does), its shuffling state is
    checkpointed too. With ``checkpoint`` set (a path, e.g. from :func:`run_checkpoint`), the state
    (weights, optimiser, loader, RNGs) is saved after every epoch and a later call with the same
    path resumes after the last finished epoch with the same numbers as an uninterrupted run (a
    finished run just returns its history; a checkpoint for another ``epochs`` is refused).
    ``amp`` defaults to on for CUDA only; ``channels_last`` to on for CUDA and CPU (oneDNN's
    convolutions skip a layout reorder with it: about 20% faster on 2 CPU cores).
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}: allowed values are {', '.join(SCHEDULES)}")
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError("the training loader yields no batches (is the subset smaller than the batch size with drop_last?)")
    device = torch.device(device) if device is not None else default_device()
    amp = device.type == "cuda" if amp is None else amp
    channels_last = device.type in ("cuda", "cpu") if channels_last is None else channels_last
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda")
    history, start_epoch = History(), 0

    path = Path(checkpoint) if checkpoint is not None else None
    state = _load_checkpoint(path, epochs, progress)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if state["scaler"]:  # empty when saved without AMP (e.g. on the CPU): nothing to restore
            scaler.load_state_dict(state["scaler"])
        history = History.from_dict(state["history"])
        start_epoch = len(history)
        if hasattr(train_loader, "load_state_dict"):
            train_loader.load_state_dict(state["loader"])
        _restore_rng(state, device)

    total_steps = epochs * steps_per_epoch
    for epoch in range(start_epoch, epochs):
        model.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        wrong = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        bar = tqdm(train_loader, desc=f"{desc or 'fit'} {epoch + 1}/{epochs}", disable=not progress, leave=False)
        for i, (x, y) in enumerate(bar):
            step_lr = _lr_at(schedule, lr, epoch * steps_per_epoch + i, total_steps)
            for g in opt.param_groups:
                g["lr"] = step_lr
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
                logits = model(x)
                loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            # accumulate on the device: no host sync per batch
            loss_sum += loss.detach() * y.numel()
            wrong += (logits.detach().argmax(1) != y).sum()
            seen += y.numel()
        record = {"epoch": epoch + 1, "train_loss": loss_sum.item() / seen, "train_err": wrong.item() / seen}
        if not math.isfinite(record["train_loss"]):
            raise FloatingPointError(f"training diverged in epoch {epoch + 1} (loss {record['train_loss']}); try a lower lr")
        if test_loader is not None:
            ev = evaluate(model, test_loader, device)
            record.update(test_loss=ev["loss"], test_err=ev["err"])
        record.update(lr=step_lr, seconds=time.perf_counter() - t0)
        history.records.append(record)
        if path is not None:
            _save(path, {
                "epochs": epochs,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scaler": scaler.state_dict(),
                "history": history.to_dict(),
                "loader": train_loader.state_dict() if hasattr(train_loader, "state_dict") else None,
                **_rng_state(device),
            })
    return history
