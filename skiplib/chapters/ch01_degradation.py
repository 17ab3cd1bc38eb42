"""The degradation experiment of Chapter 1 (He et al. 2016, Figs. 1 and 6).

Plain nets and ResNets of several depths, trained with one recipe on CIFAR-10. The chapter
notebook and ``python -m skiplib degradation`` call the same :func:`run`, with sizes from
:func:`config`, so the live run and the reference run differ only by profile.
"""

from __future__ import annotations

import time

import torch

from skiplib.data import cifar10_loaders
from skiplib.results import check_outputs, provenance, save_partial, save_result
from skiplib.models import create_model
from skiplib.profile import Profile, get_profile, seed_everything
from skiplib.train import History, fit, run_checkpoint

FAMILIES = ("plain", "resnet")


def config(profile: Profile) -> dict:
    """Run sizes per profile. ``cpu`` is tuned so that, on 2 cores within the 4-minute budget,
    plain-56 ends with clearly higher training error than plain-20 (16x16 images, an 8k subset)."""
    recipe = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "onecycle", "batch_size": 128, "seed": 0}
    sizes = profile.choose(
        smoke={"image_size": 16, "train_subset": 512, "test_subset": 256, "epochs": 1, "depths": [20, 56]},
        cpu={"image_size": 16, "train_subset": 8_000, "test_subset": 2_000, "epochs": 6, "depths": [20, 56]},
        gpu={"image_size": 32, "train_subset": None, "test_subset": None, "epochs": 6, "depths": [20, 56]},
    )
    return {**recipe, **sizes, "profile": profile.name}


def run(cfg: dict, *, device: torch.device | str | None = None, families=FAMILIES, allow_synthetic: bool = False,
        checkpoints: bool = False, progress: bool = True, partial: dict | None = None) -> dict:
    """Train every family x depth of ``cfg``; return the per-run histories and trained models
    (``{"histories": {label: History}, "models": {label: nn.Module}, "info": ..., "seconds": ...}``).

    Labels are ``plain20``, ``resnet56`` …; each net starts from the same seed. With
    ``checkpoints`` each run checkpoints every epoch to ``run_checkpoint("degradation", cfg, label)``
    (see :func:`skiplib.train.checkpoint_dir`), so that an interrupted call resumes where it stopped.
    ``partial`` (a dict) receives ``"info"`` and each run's ``"histories"`` entry as soon as it
    finishes, so a caller that is interrupted can save what finished.
    """
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown families {sorted(unknown)}: allowed values are {', '.join(FAMILIES)}")
    device = torch.device(device) if device is not None else get_profile().device
    train_loader, test_loader, info = cifar10_loaders(
        train_subset=cfg["train_subset"], test_subset=cfg["test_subset"], image_size=cfg["image_size"],
        batch_size=cfg["batch_size"], device=device, seed=cfg["seed"], allow_synthetic=allow_synthetic,
    )
    partial = {} if partial is None else partial
    partial.update(info=info, histories={})
    data = {**info, "seed": cfg["seed"]}  # recorded in each checkpoint: synthetic runs never resume as CIFAR-10
    start_state = train_loader.state_dict()  # every net sees the same batches in the same order
    histories: dict[str, History] = {}
    models: dict[str, torch.nn.Module] = {}
    t0 = time.perf_counter()
    for depth in cfg["depths"]:
        for family in families:
            label = f"{family}{depth}"
            seed_everything(cfg["seed"])
            train_loader.load_state_dict(start_state)
            model = models[label] = create_model(label)
            ckpt = run_checkpoint("degradation", cfg, label) if checkpoints else None
            histories[label] = fit(
                model, train_loader, test_loader, epochs=cfg["epochs"], lr=cfg["lr"], momentum=cfg["momentum"],
                weight_decay=cfg["weight_decay"], schedule=cfg["schedule"], device=device, checkpoint=ckpt,
                progress=progress, desc=label, data=data,
            )
            partial["histories"][label] = histories[label]
    return {"histories": histories, "models": models, "info": info, "seconds": time.perf_counter() - t0}


def main(args) -> int:
    """CLI entry: run the experiment in ``args.profile`` and write ``results/degradation-<profile>.json``."""
    profile = get_profile(args.profile)
    cfg = config(profile)
    if args.epochs is not None:
        cfg["epochs"] = args.epochs
    check_outputs(args.out_dir)  # before minutes of training, not after
    partial, t0 = {}, time.perf_counter()

    def payload(out: dict, seconds: float) -> dict:
        return {"experiment": "degradation", "config": cfg,
                "histories": {label: h.records for label, h in out.get("histories", {}).items()},
                "provenance": provenance(profile.device, out.get("info", {}).get("source", "not loaded yet"), seconds,
                                         profile.name)}

    try:
        out = run(cfg, device=profile.device, allow_synthetic=profile.allow_synthetic, checkpoints=True,
                  partial=partial)
    except KeyboardInterrupt:
        save_partial(f"degradation-{profile.name}", payload(partial, time.perf_counter() - t0), args.out_dir)
        raise
    path = save_result(f"degradation-{profile.name}", payload(out, out["seconds"]), args.out_dir)
    for label, h in out["histories"].items():
        print(f"{label:>10}: final train error {h.last['train_err']:.1%}, test error {h.last['test_err']:.1%}")
    print(f"wrote {path}")
    return 0
