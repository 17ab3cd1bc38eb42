"""Where training checkpoints live and what they are for; used by :mod:`skiplib.train` from Chapter 1 on.

* :func:`checkpoint_dir` and :func:`run_checkpoint` name the files; :func:`writable_dir` checks a
  folder can take a file before hours of training go into one.
* Every checkpoint that :func:`skiplib.train.fit` and
  :func:`skiplib.train.segmentation.fit_segmentation` write carries a *fingerprint* (model layout,
  recipe, data, seed, skiplib version). A later call resumes only a checkpoint whose fingerprint
  equals its own, so a plain net never resumes a ResNet's run and synthetic-data weights never end
  up in a result labelled CIFAR-10.
* Loading never runs code: ``torch.load(..., weights_only=True)`` unpickles tensors, numbers,
  strings and containers only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from skiplib import __version__
from skiplib.data import data_dir

_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
AFRESH = "To start afresh, delete that file or pass another checkpoint path."
_noted: set[Path] = set()  # read-only data folders already reported, so the note appears once


def _not_writable(path: Path) -> str | None:
    """Why ``path`` cannot take a new file (creating it if missing), or None if it can."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        # a real write: os.access says yes to root on a read-only bind mount and to any user on
        # some network drives
        fd, probe = tempfile.mkstemp(dir=path, prefix=".skiplib-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return f"{type(e).__name__}: {e.strerror or e}"
    return None


def writable_dir(path: str | os.PathLike, what: str, fix: str) -> Path:
    """``path`` (created if missing) when a file can be written there; else a ValueError saying
    ``what`` it is, why it fails and the ``fix``. Checked before a long run, so that minutes of
    training are never lost to a folder that cannot take the result."""
    path = Path(path).expanduser()
    reason = _not_writable(path)
    if reason is not None:
        raise ValueError(f"{what} {path} is not writable ({reason}); {fix}")
    return path


def checkpoint_dir() -> Path:
    """Where training checkpoints live: ``$SKIPLIB_CHECKPOINTS`` if set, else
    ``skiplib.data.data_dir() / "checkpoints"`` (``~/.cache/skiplib/checkpoints`` by default);
    created if missing. Used from Chapter 1 onward.

    A read-only data folder (e.g. an instructor's shared copy of CIFAR-10) is fine: checkpoints then
    go to ``~/.cache/skiplib/checkpoints``, with a one-line note, because that folder is as stable
    as the default and a notebook still resumes there. A ``$SKIPLIB_CHECKPOINTS`` that cannot be
    written is refused, never silently replaced: the user chose it, e.g. to survive a Colab reset.

    On Colab a kernel restart keeps ``~/.cache``, so a restarted notebook resumes its runs; a
    runtime reset (or a disconnect that recycles the machine) does not, unless ``SKIPLIB_DATA`` or
    ``SKIPLIB_CHECKPOINTS`` points into a mounted Google Drive folder.
    """
    env = os.environ.get("SKIPLIB_CHECKPOINTS")
    if env:
        return writable_dir(env, "the checkpoint folder $SKIPLIB_CHECKPOINTS =",
                            "set SKIPLIB_CHECKPOINTS to a folder you can write")
    path = data_dir() / "checkpoints"  # a data folder that cannot be created is data_dir's error to explain
    reason = _not_writable(path)
    if reason is None:
        return path
    fallback = Path.home() / ".cache" / "skiplib" / "checkpoints"
    if fallback != path and _not_writable(fallback) is None:
        if path not in _noted:
            _noted.add(path)
            print(f"note: {path} is not writable ({reason}); checkpoints go to {fallback} "
                  "(set SKIPLIB_CHECKPOINTS to choose another folder)", file=sys.stderr)
        return fallback
    raise ValueError(f"no writable folder for checkpoints: {path} is not writable ({reason}), nor is {fallback}; "
                     "set SKIPLIB_CHECKPOINTS to a folder you can write")


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


# ---------------------------------------------------------------------------------------------
# fingerprints


def model_fingerprint(model: nn.Module) -> dict:
    """Class name, the count of each module class, the parameter count, and a short hash of the module
    tree (names and classes) with the parameter names and shapes. The module classes matter: plain-20
    and ResNet-20 (option A) have the same parameters and differ only by parameter-free shortcuts."""
    modules = [[name, type(m).__name__] for name, m in model.named_modules()]
    params = [[name, list(p.shape)] for name, p in model.named_parameters()]
    layout = hashlib.sha1(json.dumps([modules, params]).encode()).hexdigest()[:12]
    counts = Counter(cls for _, cls in modules[1:])
    values = sum(p.numel() for p in model.parameters())
    return {"class": type(model).__name__, "modules": ", ".join(f"{n} {cls}" for cls, n in sorted(counts.items())),
            "parameters": f"{values:,} in {len(params)} tensors", "layout": layout}


def check_data(data: dict | None) -> dict | None:
    """``data`` (a description such as ``cifar10_loaders``' info dict) as plain JSON values, which a
    checkpoint can store and ``weights_only`` loading can read; ValueError unless a dict or None."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ValueError(f"data must be a dict describing the training data (e.g. the info dict of cifar10_loaders: "
                         f"source, train_size, ...) or None, got {type(data).__name__}")
    return json.loads(json.dumps(data, sort_keys=True, default=str))


def fingerprint(model: nn.Module, training: dict, data: dict | None, seed: int | None = None) -> dict:
    """What a checkpoint is for: ``model`` (see :func:`model_fingerprint`), the ``training`` recipe
    (optimiser and schedule settings, epochs), the ``data`` description, the ``seed``, the skiplib version."""
    fp = {"model": model_fingerprint(model), "training": training, "data": check_data(data), "seed": seed,
          "skiplib": __version__}
    return json.loads(json.dumps(fp))  # lists, not tuples: equal to what a checkpoint gives back


_MISSING = object()


def _show(value) -> str:
    return "(absent)" if value is _MISSING else repr(value)


def fingerprint_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """One ``field: old → new`` line per differing field (``data.source``, ``training.lr`` …);
    dicts on both sides are compared key by key, anything else as a whole."""
    lines = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key, _MISSING), new.get(key, _MISSING)
        if isinstance(a, dict) and isinstance(b, dict):
            lines += fingerprint_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            lines.append(f"{prefix}{key}: {_show(a)} → {_show(b)}")
    return lines


# ---------------------------------------------------------------------------------------------
# saving and loading


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` to ``path``: to a temporary file, then renamed, so a disconnect mid-write never
    leaves a corrupt checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path | None, fp: dict, progress: bool) -> dict | None:
    """The saved state at ``path`` (None when there is none yet), refused with a ValueError unless
    its fingerprint equals ``fp``, field by field."""
    if path is None or not path.exists():
        return None
    try:
        # map to the CPU: RNG and generator states must be CPU tensors, and load_state_dict moves
        # weights and optimiser state to the model's device. weights_only: a checkpoint holds only
        # tensors, dicts, lists and numbers, so nothing in it can run code when loaded.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a checkpoint, or holding objects that could run code
        # not torch's own text: for a refused pickle it suggests switching weights_only off, which runs code
        raise ValueError(f"checkpoint {path} cannot be read ({type(e).__name__}): it is truncated, corrupt, or holds "
                         f"more than tensors and plain values (which could run code, so it is not loaded). {AFRESH}") from None
    if not isinstance(state, dict) or "history" not in state:
        raise ValueError(f"{path} is not a skiplib training checkpoint. {AFRESH}")
    old = state.get("fingerprint")
    if old is None:
        raise ValueError(
            f"checkpoint {path} was written by an older skiplib, without a fingerprint (which model, recipe and data "
            f"it is for), so it cannot be verified and is not resumed. {AFRESH}")
    diffs = fingerprint_differences(old, fp)
    if diffs:
        epochs_old, epochs_new = old.get("training", {}).get("epochs"), fp["training"]["epochs"]
        head = (f"checkpoint {path} was made for a {epochs_old}-epoch run, not {epochs_new}" if epochs_old != epochs_new
                else f"checkpoint {path} was made for another run")
        raise ValueError(head + ", so it is not resumed; what differs (saved → now):\n  " + "\n  ".join(diffs)
                         + f"\n{AFRESH}")
    if progress:
        done, epochs = len(state["history"]["records"]), fp["training"]["epochs"]
        print(f"{'finished run loaded' if done == epochs else 'resumed'} from {path} after epoch {done}/{epochs}")
    return state


def rng_state(device: torch.device) -> dict:
    """The global RNG states to checkpoint: the CPU one, and the training GPU's on CUDA."""
    return {"torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def cpu_bytes(state: torch.Tensor) -> torch.Tensor:
    """``state`` as a CPU uint8 tensor: torch.set_rng_state and torch.cuda.set_rng_state take only
    those (a TypeError otherwise), whatever device the checkpoint was loaded onto."""
    return state.to("cpu", torch.uint8)


def restore_rng(state: dict, device: torch.device) -> None:
    """Restore what :func:`rng_state` saved (a CUDA state only when training on CUDA again)."""
    torch.set_rng_state(cpu_bytes(state["torch_rng"]))
    cuda_rng = state.get("cuda_rng")
    if cuda_rng is not None and device.type == "cuda":
        torch.cuda.set_rng_state(cpu_bytes(cuda_rng), device)
