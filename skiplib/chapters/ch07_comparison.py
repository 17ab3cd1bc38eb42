"""Chapter 7's side-by-side comparison of the skip family (``python -m skiplib compare``).

Plain, highway, residual, pre-activation residual and dense nets at one parameter budget
across a depth sweep on CIFAR-10, several seeds each, trained with one recipe through
:func:`skiplib.analysis.families.compare`. The notebook and the CLI call the same :func:`run` with sizes
from :func:`config`, so the live run and the reference run differ only by profile.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from tqdm.auto import tqdm

from skiplib import plots
from skiplib.analysis.families import FAMILIES, compare, summarise
from skiplib.chapters.ch01_budget import CIFAR_TRAIN_IMAGES
from skiplib.chapters.ch01_degradation import profile_and_config, result_name
from skiplib.data import cifar10_loaders
from skiplib.profile import Profile, get_profile
from skiplib.results import load_partial, reusable_partial, run_and_save
from skiplib.train.distributed import World, gather, shard

CLASSIFIERS = ("plain", "highway", "residual", "preact", "dense")
# how the chapter's figures and tables name and colour each family (plain warm, residual nets cool)
FAMILY_LABELS = {"plain": "plain", "highway": "highway", "residual": "residual", "preact": "pre-act residual",
                 "dense": "DenseNet-BC"}
FAMILY_COLORS = {"plain": "#b2182b", "highway": "#e08214", "residual": "#2166ac", "preact": "#67a9cf",
                 "dense": "#1b7837"}


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


def run_list(cfg: dict) -> list[tuple[str, int, int]]:
    """Every run of ``cfg`` as ``(family, target depth, seed)``, in the order :func:`compare` trains them."""
    return [(name, target, seed) for name in cfg["families"] for target in cfg["depths"] for seed in cfg["seeds"]]


def run(cfg: dict, *, device: torch.device | str | None = None, allow_synthetic: bool = False,
        progress: bool = True, checkpoints: bool = False, partial: dict | None = None,
        previous: dict | None = None, world: World | None = None) -> dict:
    """Train every family x depth x seed of ``cfg``; returns ``{"records", "summary", "info", "seconds"}``.
    With ``checkpoints`` each run checkpoints every epoch (keyed by ``cfg``, see
    :func:`skiplib.analysis.families.compare`), so an interrupted call resumes where it stopped. ``partial``
    (a dict) receives ``"info"`` and each run's record in ``"records"`` as soon as it finishes; the records
    of ``previous`` (such a partial result, saved as JSON, made with the same ``cfg`` and data) are taken
    as they are instead of training those runs again. ``progress`` shows a bar over the runs (and per
    epoch). Under torchrun (``world``) this rank trains its share of :func:`run_list` and rank 0 gets
    every rank's records."""
    unknown = [f for f in cfg["families"] if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown families {unknown}: registered families are {', '.join(FAMILIES)}")
    device = torch.device(device) if device is not None else get_profile().device
    world = world or World()
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
    runs = run_list(cfg)
    key = lambda r: (r["family"], r["target_depth"], r["seed"])  # noqa: E731
    previous = reusable_partial(previous, cfg, loaders(runs[0][2])[2]["source"]) if previous else None
    done = {key(r): r for r in previous["records"]} if previous else {}
    t0 = time.perf_counter()
    mine = shard(runs, world)
    with tqdm(total=len(mine), desc="compare runs", unit="run", disable=not progress) as bar:
        for name, target, seed in mine:
            if (name, target, seed) in done:  # finished before an interruption: read back, not trained again
                records.append(done[name, target, seed])
            else:  # one run per call, so that any run can be skipped or dealt to another rank
                compare([name], [target], cfg["budget"], loaders=loaders, epochs=cfg["epochs"], seeds=[seed],
                        fit_kwargs=fit_kwargs, device=device, progress=progress, checkpoints=checkpoints,
                        data_config=cfg, on_record=records.append)
            bar.update(1)
    merged = {key(r): r for part in (gather(list(records), world) or [records]) for r in part}
    ordered = [merged[r] for r in runs if r in merged]
    return {"records": ordered, "summary": summarise(ordered), "info": info, "seconds": time.perf_counter() - t0}


def by_family(rows: Sequence[dict], key: str) -> dict[str, tuple[list[int], np.ndarray, np.ndarray]]:
    """``{family: (depths, means, stds)}`` of one metric (``"train_err"``, ``"test_err"`` …) of a
    :func:`summarise` table, each family's rows sorted by depth, families in order of appearance."""
    curves = {}
    for name in dict.fromkeys(r["family"] for r in rows):
        rs = sorted((r for r in rows if r["family"] == name), key=lambda r: r["depth"])
        curves[name] = ([r["depth"] for r in rs], np.array([r[f"{key}_mean"] for r in rs]),
                        np.array([r[f"{key}_std"] for r in rs]))
    return curves


def plot_vs_depth(rows: Sequence[dict], key: str, ax: Axes, title: str) -> None:
    """One error curve per family against depth (mean over seeds, bars one standard deviation), in %."""
    for i, (name, (depths, mean, std)) in enumerate(by_family(rows, key).items()):
        ax.errorbar(depths, 100 * mean, yerr=100 * std, marker="o", capsize=4, label=FAMILY_LABELS.get(name, name),
                    color=FAMILY_COLORS.get(name, plots.color_for(name, i)))
    ax.set_xlabel("depth (weighted layers)")
    ax.set_ylabel(f"{key.replace('_err', '')} error (%)")
    ax.set_title(title)


def plot_reference(result: dict, ax: Axes) -> None:
    """Draw a ``compare-<profile>`` reference run (:func:`skiplib.plots.show_reference`, one axis)."""
    plot_vs_depth(result["summary"], "train_err", ax, "training error (reference run)")
    ax.legend(fontsize=9)


def main(args: argparse.Namespace) -> int:
    """CLI entry: run the comparison in ``args.profile`` and write ``results/compare-<profile>.json``
    (under torchrun the runs are shared among the ranks and rank 0 writes it)."""
    from skiplib.train import distributed as dist

    profile, cfg = profile_and_config(args, config)
    world = dist.world_from_env()
    device = dist.device_for(world, profile.device)

    def body(out: dict) -> dict:
        records = out.get("records", [])
        return {"experiment": "compare", "config": cfg, "records": records, "summary": summarise(records)}

    name = result_name("compare", profile, args)
    with dist.session(world, device):
        previous = load_partial(name, args.out_dir)
        out, path = run_and_save(
            name, body=body, device=device, profile=profile.name, out_dir=args.out_dir, world=world,
            run=lambda partial: run(cfg, device=device, allow_synthetic=profile.allow_synthetic, progress=True,
                                    checkpoints=True, partial=partial, previous=previous, world=world))
    if not world.main:
        return 0
    for row in out["summary"]:
        print(f"{row['family']:>9}-{row['depth']:<3} {row['params']:>8,} params: train error "
              f"{row['train_err_mean']:.1%} ± {row['train_err_std']:.1%}, test error {row['test_err_mean']:.1%}, "
              f"{row['img_per_s_mean']:.0f} img/s")
    print(f"wrote {path}")
    return 0


def reference_title(result: dict) -> str:
    """A panel title for a ``compare`` reference run: where it ran and its budget."""
    cfg = result["config"]
    size, images = cfg["image_size"], cfg["train_subset"] or CIFAR_TRAIN_IMAGES
    return f"{result['provenance']['device']}: {cfg['epochs']} epochs, {images:,} images at {size}×{size}"


def reference_summary(result: dict) -> str:
    """The sentence under the reference figure, computed from a ``compare`` result: its budget and
    seeds, and each family's change in training error from its shallowest to its deepest net
    (families that did not reach two depths are named as unfinished)."""
    cfg, rows = result["config"], result["summary"]
    seeds = max((r["seeds"] for r in rows), default=0)  # how many seeds each summary row averages
    images = cfg["train_subset"] or CIFAR_TRAIN_IMAGES
    rises, unfinished = [], []
    for name, (depths, mean, _) in by_family(rows, "train_err").items():
        if len(depths) < 2:
            unfinished.append(FAMILY_LABELS.get(name, name))
            continue
        rises.append(f"the {FAMILY_LABELS.get(name, name)} net's by {100 * (mean[-1] - mean[0]):+.1f} points "
                     f"(depth {depths[0]} to {depths[-1]}, to {mean[-1]:.1%})")
    device = result.get("provenance", {}).get("device")
    where = f" on {device}" if device else ""
    text = (f"In the reference run{where} ({cfg['epochs']} epochs on {images:,} images at {cfg['image_size']}×"
            f"{cfg['image_size']}, up to {seeds} seeds per net) the training error changes as follows: "
            + "; ".join(rises) + ".")
    if unfinished:
        text += f" Not enough runs finished to compare depths for: {', '.join(unfinished)}."
    return text
