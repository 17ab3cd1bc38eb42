"""Benchmarks that print numbers (never pass/fail): ``python -m skiplib bench``.

1. Execution seconds of each chapter notebook in the ``cpu`` profile (the book build's budget
   is 4 minutes each on 2 cores).
2. Training throughput of :func:`skiplib.train.fit` against a bare PyTorch loop on the same
   model, data and optimiser, measured in one run, and their ratio.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from skiplib.data import cifar10_loaders
from skiplib.experiments import degradation
from skiplib.experiments.provenance import REPO_ROOT
from skiplib.models import create_model
from skiplib.profile import get_profile, seed_everything
from skiplib.train import fit


def time_notebook(path: Path, profile: str = "cpu", timeout: int = 1800) -> float:
    """Execute a notebook (in a fresh kernel, ``SKIPLIB_PROFILE=profile``) and return its seconds."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    old = os.environ.get("SKIPLIB_PROFILE")
    os.environ["SKIPLIB_PROFILE"] = profile  # the kernel inherits our environment
    try:
        t0 = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
        return time.perf_counter() - t0
    finally:
        if old is None:
            os.environ.pop("SKIPLIB_PROFILE", None)
        else:
            os.environ["SKIPLIB_PROFILE"] = old


def _bare_loop(model, loader, steps: int, lr: float, device) -> float:
    """The minimal loop fit() must not be much slower than (channels_last, like fit's
    default on CPU and CUDA; no AMP): returns images per second."""
    model.to(device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train()
    seen, t0, step = 0, time.perf_counter(), 0
    while step < steps:
        for x, y in loader:
            x = x.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += y.numel()
            step += 1
            if step == steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - t0)


def fit_vs_bare(steps: int = 60, model_name: str = "resnet20") -> dict:
    """Images/s of fit() and of a bare loop on the same model and batches, and fit/bare."""
    profile = get_profile()
    cfg = degradation.config(profile)
    train_loader, _, info = cifar10_loaders(
        train_subset=steps * cfg["batch_size"], test_subset=None if profile.name == "gpu" else 256,
        image_size=cfg["image_size"], batch_size=cfg["batch_size"], device=profile.device, seed=0,
        allow_synthetic=True, verbose=False,
    )
    epochs = max(1, steps // len(train_loader))
    seed_everything(0)
    base = create_model(model_name).to(profile.device)
    state = train_loader.state_dict()
    results = {}
    # alternate twice and keep the best of each, so a background blip does not decide the ratio
    for _ in range(2):
        model = copy.deepcopy(base)
        train_loader.load_state_dict(state)
        t0 = time.perf_counter()
        fit(model, train_loader, epochs=epochs, device=profile.device, progress=False, amp=False, channels_last=True)
        fit_ips = epochs * train_loader.num_samples / (time.perf_counter() - t0)
        model = copy.deepcopy(base)
        train_loader.load_state_dict(state)
        bare_ips = _bare_loop(model, train_loader, epochs * len(train_loader), cfg["lr"], profile.device)
        results["fit"] = max(results.get("fit", 0.0), fit_ips)
        results["bare"] = max(results.get("bare", 0.0), bare_ips)
    results.update(ratio=results["fit"] / results["bare"], model=model_name, image_size=cfg["image_size"],
                   batch_size=cfg["batch_size"], device=str(profile.device), data=info["source"])
    return results


def main(args) -> int:
    """CLI entry point."""
    if not args.no_notebooks:
        paths = args.notebooks or sorted((REPO_ROOT / "book").glob("*.ipynb"))
        print("notebook seconds, cpu profile")
        for path in paths:
            print(f"  {path.name:<40} {time_notebook(Path(path)):7.1f} s", flush=True)
    r = fit_vs_bare(steps=args.steps)
    print(f"fit() vs bare loop, {r['model']} at {r['image_size']}x{r['image_size']}, batch {r['batch_size']}, "
          f"{r['device']}, {r['data']}")
    print(f"  fit: {r['fit']:.0f} img/s   bare loop: {r['bare']:.0f} img/s   ratio fit/bare: {r['ratio']:.3f}")
    return 0
