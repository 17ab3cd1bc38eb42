"""Provenance for reference runs: every ``results/*.json`` says how it was made."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO_ROOT / "results"


def git_commit() -> str:
    """The checkout's commit, with ``-dirty`` if tracked files changed; ``unknown`` outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_name(device: torch.device) -> str:
    """A human-readable name of the device a run used."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def provenance(device: torch.device, data_source: str, seconds: float, profile: str) -> dict:
    """Command, commit, device, data source, date, seconds and versions of a run."""
    return {
        "command": " ".join(["python -m skiplib"] + sys.argv[1:]) if sys.argv and sys.argv[0].endswith("__main__.py") else " ".join(sys.argv),
        "commit": git_commit(),
        "device": device_name(device),
        "data_source": data_source,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "profile": profile,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host_cpus": os.cpu_count(),
    }


def save_result(name: str, payload: dict, directory: Path | None = None) -> Path:
    """Write ``results/<name>.json`` (pretty, stable key order) and return its path."""
    directory = Path(directory) if directory is not None else RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    return path


def load_result(name: str, directory: Path | None = None) -> dict | None:
    """The stored reference run ``results/<name>.json``, or None if there is none."""
    path = (Path(directory) if directory is not None else RESULTS_DIR) / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None
