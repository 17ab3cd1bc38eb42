"""Chapter 7's side-by-side comparison of the skip family (``python -m skiplib compare``).

Plain, highway, residual, pre-activation residual and dense nets at one parameter budget
across a depth sweep on CIFAR-10, several seeds each, trained with one recipe through
:func:`skiplib.analysis.families.compare`. The notebook and the CLI call the same :func:`run` with sizes
from :func:`config`, so the live run and the reference run differ only by profile.
"""

from __future__ import annotations

import time

import torch

from skiplib.analysis.families import FAMILIES, compare, summarise
from skiplib.data import cifar10_loaders
from skiplib.results import check_outputs, provenance, save_partial, save_result
from skiplib.profile import Profile, get_profile

CLASSIFIERS = ("plain", "highway", "residual", "preact", "dense")


def config(profile: Profile) -> dict:
    """Run sizes per profile. ``cpu``: two depths, two seeds, 3k CIFAR-10 images at 16x16 for 3
    epochs, about 2.5 of the notebook's 4 minutes on 2 cores; deep enough that the plain net's
    training error rises with depth while the residual nets' barely moves."""
    recipe = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "onecycle", "batch_size": 128}
    sizes = profile.choose(
        smoke={"image_size": 16, "train_subset": 256, "test_subset": 128, "epochs": 1, "depths": [8, 14],
               "seeds": [0, 1], "budget": 25_000},
        cpu={"image_size": 16, "train_subset": 3_000, "test_subset": 1_000, "epochs": 3, "depths": [8, 32],
             "seeds": [0, 1], "budget": 100_000},
        gpu={"image_size": 32, "train_subset": 10_000, "test_subset": 2_000, "epochs": 5, "depths": [8, 32],
             "seeds": [0, 1], "budget": 300_000},
    )
    return {**recipe, **sizes, "families": list(CLASSIFIERS), "profile": profile.name}


def run(cfg: dict, *, device: torch.device | str | None = None, allow_synthetic: bool = False,
        progress: bool = False, checkpoints: bool = False, partial: dict | None = None) -> dict:
    """Train every family x depth x seed of ``cfg``; returns ``{"records", "summary", "info", "seconds"}``.
    With ``checkpoints`` each run checkpoints every epoch (keyed by ``cfg``, see
    :func:`skiplib.analysis.families.compare`), so an interrupted call resumes where it stopped. ``partial``
    (a dict) receives ``"info"`` and each run's record in ``"records"`` as soon as it finishes."""
    unknown = [f for f in cfg["families"] if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown families {unknown}: registered families are {', '.join(FAMILIES)}")
    device = torch.device(device) if device is not None else get_profile().device
    partial = {} if partial is None else partial
    info = partial.setdefault("info", {})
    records = partial.setdefault("records", [])

    def loaders(seed: int):
        # the same seed gives the same subset, augmentation and batch order for every family
        train, test, meta = cifar10_loaders(
            train_subset=cfg["train_subset"], test_subset=cfg["test_subset"], image_size=cfg["image_size"],
            batch_size=cfg["batch_size"], device=device, seed=seed, allow_synthetic=allow_synthetic, verbose=False)
        info.update(meta)
        return train, test, meta

    fit_kwargs = {k: cfg[k] for k in ("lr", "momentum", "weight_decay", "schedule")}
    t0 = time.perf_counter()
    compare(cfg["families"], cfg["depths"], cfg["budget"], loaders=loaders, epochs=cfg["epochs"], seeds=cfg["seeds"],
            fit_kwargs=fit_kwargs, device=device, progress=progress, checkpoints=checkpoints, data_config=cfg,
            on_record=records.append)
    return {"records": records, "summary": summarise(records), "info": info, "seconds": time.perf_counter() - t0}


def main(args) -> int:
    """CLI entry: run the comparison in ``args.profile`` and write ``results/compare-<profile>.json``."""
    profile = get_profile(args.profile)
    cfg = config(profile)
    if args.epochs is not None:
        cfg["epochs"] = args.epochs
    check_outputs(args.out_dir)  # before minutes of training, not after
    partial, t0 = {}, time.perf_counter()

    def payload(out: dict, seconds: float) -> dict:
        records = out.get("records", [])
        return {"experiment": "compare", "config": cfg, "records": records, "summary": summarise(records),
                "provenance": provenance(profile.device, out.get("info", {}).get("source", "not loaded yet"), seconds,
                                         profile.name)}

    try:
        out = run(cfg, device=profile.device, allow_synthetic=profile.allow_synthetic, progress=True, checkpoints=True,
                  partial=partial)
    except KeyboardInterrupt:
        save_partial(f"compare-{profile.name}", payload(partial, time.perf_counter() - t0), args.out_dir)
        raise
    path = save_result(f"compare-{profile.name}", payload(out, out["seconds"]), args.out_dir)
    for row in out["summary"]:
        print(f"{row['family']:>9}-{row['depth']:<3} {row['params']:>8,} params: train error "
              f"{row['train_err_mean']:.1%} ± {row['train_err_std']:.1%}, test error {row['test_err_mean']:.1%}, "
              f"{row['img_per_s_mean']:.0f} img/s")
    print(f"wrote {path}")
    return 0
