"""Run-size profiles, device choice and seeding (used by every chapter).

One switch, ``SKIPLIB_PROFILE`` = ``smoke`` | ``cpu`` | ``gpu``, decides how big every
experiment is. Notebooks never hard-code sizes: they ask the profile, usually through a
chapter's ``config`` function in :mod:`skiplib.chapters`.

* ``smoke``: the test suite (nbval); every notebook in <= 60 s on 2 CPU cores; may use a
  synthetic stand-in for CIFAR-10.
* ``cpu``: the book build and a learner's laptop; every notebook in <= 4 min on 2 cores, and
  still shows the chapter's phenomenon.
* ``gpu``: Colab T4 or a workstation; the paper's setting shortened to minutes.
"""

from __future__ import annotations

import os
import random
import warnings
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

PROFILES = ("smoke", "cpu", "gpu")
T = TypeVar("T")
_warned_gpu_without_cuda = False  # warn once per process: get_profile is called by every experiment


@dataclass(frozen=True)
class Profile:
    """The active run size and device. ``choose`` picks a value per profile."""

    name: str
    device: torch.device

    @property
    def allow_synthetic(self) -> bool:
        """Only the ``smoke`` profile may fall back to synthetic data."""
        return self.name == "smoke"

    def choose(self, *, smoke: T, cpu: T, gpu: T) -> T:
        """Return the value given for the active profile."""
        return {"smoke": smoke, "cpu": cpu, "gpu": gpu}[self.name]


def default_device() -> torch.device:
    """CUDA if available, then Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def get_profile(name: str | None = None, device: str | torch.device | None = None) -> Profile:
    """The active profile: ``name``, else ``$SKIPLIB_PROFILE``, else ``gpu`` with CUDA, else ``cpu``.

    The ``gpu`` profile chosen on a machine without CUDA (and no ``device`` given) warns once: its
    runs are sized for a GPU and would otherwise start, silently, hours of work on a CPU."""
    global _warned_gpu_without_cuda
    name = name or os.environ.get("SKIPLIB_PROFILE") or ("gpu" if torch.cuda.is_available() else "cpu")
    name = name.strip().lower()
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: SKIPLIB_PROFILE must be one of {', '.join(PROFILES)}")
    chosen = torch.device(device) if device is not None else default_device()
    # an explicit device means the caller knows (e.g. estimating gpu-profile costs on a CPU)
    if name == "gpu" and device is None and chosen.type != "cuda" and not _warned_gpu_without_cuda:
        _warned_gpu_without_cuda = True
        # no estimate from skiplib.tools.workload: profile sits below it in the import order
        warnings.warn(f"the gpu profile is sized for a CUDA GPU (minutes per chapter on Colab's T4), but this machine "
                      f"has none: on the {chosen.type} its runs take hours. Set SKIPLIB_PROFILE=cpu (or --profile cpu) "
                      "for runs sized for a laptop.", UserWarning, stacklevel=2)
    return Profile(name=name, device=chosen)


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) so a run repeats on the same machine."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
