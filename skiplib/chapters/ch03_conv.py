"""Chapter 3's "highway against residual" comparison (``python -m skiplib highway --part conv``).

A ResNet (option A) and a highway conv net of the same layout and matched parameter count
(:class:`skiplib.models.highway.HighwayCifarNet`), trained with one recipe from one seed on the
same batches. The notebook trains one seed (:func:`train_pair`); the CLI trains the same pair for
each of several seeds (:func:`run`) and writes ``highway-conv-<profile>[-<tag>].json``: the
per-epoch records of every (net, seed), a per-net summary over seeds and the provenance.

* :func:`config`: the comparison's sizes, taken from :func:`skiplib.chapters.ch03_highway.config`;
* :func:`make_nets`, :func:`train_pair`, :func:`run`, :func:`summarise`: the training;
* :func:`plot_reference`, :func:`reference_summary`: the chapter's reference figure and sentence.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from skiplib import plots
from skiplib.analysis.stats import mean_std
from skiplib.chapters import ch03_highway
from skiplib.data import cifar10_loaders
from skiplib.models import count_parameters
from skiplib.models.cifar import cifar_resnet
from skiplib.models.highway import HighwayCifarNet
from skiplib.profile import Profile, seed_everything
from skiplib.results import load_partial, reusable_partial, run_and_save
from skiplib.train import History, fit, run_checkpoint


def config(profile: Profile) -> dict:
    """The comparison's settings in ``profile``: Chapter 3's ``conv_*`` sizes and recipe
    (:func:`skiplib.chapters.ch03_highway.config`) under plain names, with the chapter's one seed
    as ``seeds``; the CLI's ``--epochs`` and ``--seeds`` override ``epochs`` and ``seeds``."""
    cfg = ch03_highway.config(profile)
    return {"depth": cfg["conv_depth"], "image_size": cfg["conv_image_size"],
            "train_subset": cfg["conv_train_subset"], "test_subset": cfg["conv_test_subset"],
            "epochs": cfg["conv_epochs"], "seeds": [cfg["seed"]], "batch_size": cfg["batch_size"],
            "lr": cfg["conv_lr"], "momentum": cfg["momentum"], "weight_decay": cfg["conv_weight_decay"],
            "schedule": cfg["schedule"], "profile": profile.name}


def make_nets(depth: int) -> dict[str, Callable[[], nn.Module]]:
    """``{"resnet<depth>": ..., "highway<depth>": ...}``: a fresh ResNet (option A) and the
    highway net of the same layout and matched parameters. ``cifar_resnet`` rather than
    ``create_model``: the smoke profile's depth 8 is not registered."""
    return {f"resnet{depth}": lambda: cifar_resnet(depth), f"highway{depth}": lambda: HighwayCifarNet(depth)}


def _checkpoint_key(cfg: dict, seed: int) -> dict:
    return {**{k: v for k, v in cfg.items() if k != "seeds"}, "seed": seed}


def train_pair(cfg: dict, seed: int, *, device: torch.device | str, allow_synthetic: bool = False,
               progress: bool = False, checkpoints: bool = True, done: Mapping[str, History] | None = None,
               on_history: Callable[[str, History], None] | None = None,
               verbose: bool = True) -> tuple[dict[str, History], dict]:
    """Train the ResNet and the highway net of ``cfg`` from ``seed`` on the same subset and the
    same batches in the same order; returns ``({label: History}, data info)``. With ``checkpoints``
    each net checkpoints every epoch (keyed by ``cfg`` and ``seed``), so an interrupted call resumes.
    Nets in ``done`` are taken as they are; ``on_history(label, history)`` is called as each finishes."""
    train_loader, test_loader, info = cifar10_loaders(
        train_subset=cfg["train_subset"], test_subset=cfg["test_subset"], image_size=cfg["image_size"],
        batch_size=cfg["batch_size"], device=device, seed=seed, allow_synthetic=allow_synthetic, verbose=verbose)
    start_state = train_loader.state_dict()  # both nets see the same batches
    histories = {}
    for label, make in make_nets(cfg["depth"]).items():
        if done and label in done:
            histories[label] = done[label]
            continue
        seed_everything(seed)
        train_loader.load_state_dict(start_state)
        histories[label] = fit(
            make(), train_loader, test_loader, epochs=cfg["epochs"], lr=cfg["lr"], momentum=cfg["momentum"],
            weight_decay=cfg["weight_decay"], schedule=cfg["schedule"], device=device, progress=progress,
            desc=f"{label} seed {seed}",
            checkpoint=run_checkpoint("ch03", _checkpoint_key(cfg, seed), label) if checkpoints else None)
        if on_history is not None:
            on_history(label, histories[label])
    return histories, info


def run(cfg: dict, *, device: torch.device | str, allow_synthetic: bool = False, progress: bool = True,
        checkpoints: bool = False, partial: dict | None = None, previous: dict | None = None) -> dict:
    """Train the pair for every seed of ``cfg``; returns ``{"histories", "params", "info", "seconds"}``
    with ``histories[label][str(seed)]`` a :class:`History`. ``partial`` (a dict) receives ``"info"``,
    ``"params"`` and each finished (net, seed) as it finishes; the runs of ``previous`` (such a partial
    result, saved as JSON, made with the same ``cfg`` and data) are read back instead of trained again."""
    partial = {} if partial is None else partial
    histories = partial.setdefault("histories", {})
    partial["params"] = {label: count_parameters(make()) for label, make in make_nets(cfg["depth"]).items()}
    info = partial.setdefault("info", {})
    t0 = time.perf_counter()
    if previous:
        source = cifar10_loaders(train_subset=cfg["train_subset"], test_subset=cfg["test_subset"],
                                 image_size=cfg["image_size"], seed=cfg["seeds"][0],
                                 allow_synthetic=allow_synthetic, verbose=False)[2]["source"]
        previous = reusable_partial(previous, cfg, source)
    old = previous["histories"] if previous else {}
    with tqdm(total=len(cfg["seeds"]), desc="highway vs resnet", unit="seed", disable=not progress) as bar:
        for seed in cfg["seeds"]:
            done = {label: History(h[str(seed)]) for label, h in old.items() if str(seed) in h}

            def keep(label: str, history: History, seed: int = seed) -> None:
                histories.setdefault(label, {})[str(seed)] = history

            for label, history in done.items():
                keep(label, history)
            _, meta = train_pair(cfg, seed, device=device, allow_synthetic=allow_synthetic, progress=progress,
                                 checkpoints=checkpoints, done=done, on_history=keep, verbose=False)
            info.update(meta)
            bar.update(1)
    return {"histories": histories, "params": partial["params"], "info": info, "seconds": time.perf_counter() - t0}


def records(histories: Mapping[str, Mapping[str, History | list]]) -> dict:
    """``{label: {seed: [per-epoch records]}}`` of :func:`run`'s histories (as JSON stores them)."""
    return {label: {seed: (h.records if isinstance(h, History) else list(h)) for seed, h in per_seed.items()}
            for label, per_seed in histories.items()}


def summarise(histories: Mapping[str, Mapping[str, History | list]], params: Mapping[str, int]) -> dict:
    """Per net: final training and test error, mean and sample std over its seeds, the seeds,
    its parameters and the mean measured seconds per epoch."""
    out = {}
    for label, per_seed in records(histories).items():
        runs = [r for r in per_seed.values() if r]
        if not runs:
            continue
        row = {"params": params.get(label), "seeds": len(runs)}
        for key in ("train_err", "test_err"):
            row[f"{key}_mean"], row[f"{key}_std"] = mean_std([r[-1][key] for r in runs])
        row["seconds_per_epoch"] = float(np.mean([e["seconds"] for r in runs for e in r]))
        out[label] = row
    return out


def plot_reference(result: dict, axes) -> None:
    """Draw a ``highway-conv`` result (:func:`skiplib.plots.show_reference`, two axes): left, the
    training (solid) and test (dashed) error per epoch, mean over seeds with a band of one standard
    deviation; right, each net's final errors, mean with bars of one standard deviation."""
    a1, a2 = axes
    # the ResNet first, as in the live figure (JSON stores the nets sorted by name)
    order = [f"{kind}{result['config']['depth']}" for kind in ("resnet", "highway")]
    runs = {k: v for k, v in sorted(records(result["histories"]).items(),
                                    key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))}
    summary = {k: result["summary"][k] for k in runs if k in result["summary"]}
    for i, (label, per_seed) in enumerate(runs.items()):
        color = plots.color_for(label, i)
        curves = [r for r in per_seed.values() if r]
        n = min(len(r) for r in curves)
        for key, style in (("train_err", "-"), ("test_err", "--")):
            values = 100 * np.array([[e[key] for e in r[:n]] for r in curves])
            mean, std = values.mean(axis=0), values.std(axis=0, ddof=1) if len(curves) > 1 else 0 * values[0]
            epochs = np.arange(1, n + 1)
            a1.plot(epochs, mean, style, color=color, label=f"{label} {key.split('_')[0]}")
            a1.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.15)
    a1.set_xlabel("epoch")
    a1.set_ylabel("error (%), mean over seeds")
    a1.set_title("error per epoch (solid: train, dashed: test)")
    a1.legend(fontsize=9)
    labels = list(summary)
    for j, key in enumerate(("train_err", "test_err")):
        x = np.arange(len(labels)) + (j - 0.5) * 0.35
        a2.bar(x, [100 * summary[k][f"{key}_mean"] for k in labels], width=0.35,
               yerr=[100 * summary[k][f"{key}_std"] for k in labels], capsize=4,
               color=[plots.color_for(k, i) for i, k in enumerate(labels)], alpha=1.0 if j == 0 else 0.5,
               label=key.split("_")[0])
    a2.set_xticks(np.arange(len(labels)))
    a2.set_xticklabels(labels)
    a2.set_ylabel("final error (%)")
    a2.set_title("final error (solid: train, pale: test)")


def gap(result: dict) -> tuple[float, float]:
    """``(highway minus ResNet mean final training error, its standard error over seeds)``: the
    root of the summed squared standard errors of the two means (0 with one seed)."""
    (res, hw) = (result["summary"][f"{kind}{result['config']['depth']}"] for kind in ("resnet", "highway"))
    spread = math.sqrt(hw["train_err_std"] ** 2 / hw["seeds"] + res["train_err_std"] ** 2 / res["seeds"])
    return hw["train_err_mean"] - res["train_err_mean"], spread


def reference_summary(result: dict, live_gap: float | None = None) -> str:
    """The sentence under the reference figure, computed from a ``highway-conv`` result: its budget,
    each net's final errors (mean ± std over seeds), which net trains better and whether that is
    beyond the spread over seeds, and whether it agrees with the live run's ``live_gap`` (highway
    minus ResNet final training error of one seed)."""
    cfg, summary = result["config"], result["summary"]
    d = cfg["depth"]
    res, hw = summary[f"resnet{d}"], summary[f"highway{d}"]
    diff, spread = gap(result)
    text = (f"In the reference run ({cfg['epochs']} epochs on {cfg['train_subset']:,} images at "
            f"{cfg['image_size']}×{cfg['image_size']}, {hw['seeds']} seeds) ResNet-{d} ends at "
            f"{res['train_err_mean']:.1%} ± {res['train_err_std']:.1%} training and {res['test_err_mean']:.1%} ± "
            f"{res['test_err_std']:.1%} test error, the highway net at {hw['train_err_mean']:.1%} ± "
            f"{hw['train_err_std']:.1%} and {hw['test_err_mean']:.1%} ± {hw['test_err_std']:.1%}")
    if abs(diff) <= max(2 * spread, 0.01):
        text += (f": a difference of {100 * abs(diff):.1f} points in training error, within twice its standard "
                 "error over seeds, so at this budget neither net trains measurably better")
    else:
        better, worse = ("the ResNet", "the highway net") if diff > 0 else ("the highway net", "the ResNet")
        text += (f": {better} ends {100 * abs(diff):.1f} points lower in training error than {worse}, "
                 f"more than twice the standard error of that difference over seeds ({100 * spread:.1f} points)")
    text += f"; the highway net took {hw['seconds_per_epoch'] / res['seconds_per_epoch']:.2f} times as long per epoch."
    if live_gap is not None and abs(live_gap) >= 0.01 and abs(diff) > max(2 * spread, 0.01):
        same = (live_gap > 0) == (diff > 0)
        text += (" The longer, multi-seed run agrees with the live run above about which net trains better."
                 if same else " This contradicts the live run above, in which the other net ended lower: "
                 "one short run of one seed was not enough to tell.")
    elif live_gap is not None and abs(live_gap) >= 0.01:
        text += (" So the live run's difference above, from one short run of one seed, is not borne out by "
                 "the longer run.")
    return text


def main(args: argparse.Namespace) -> int:
    """CLI entry (``python -m skiplib highway --part conv``): train the pair for every seed and
    write ``highway-conv-<profile>[-<tag>].json`` (``--epochs``, ``--seeds`` override the profile's)."""
    from skiplib.chapters.ch01_degradation import profile_and_config, result_name

    torch.set_flush_denormal(True)
    profile, cfg = profile_and_config(args, config)
    name = result_name("highway-conv", profile, args)

    def body(out: dict) -> dict:
        hist, params = out.get("histories", {}), out.get("params", {})
        return {"experiment": "highway-conv", "config": cfg, "histories": records(hist),
                "summary": summarise(hist, params)}

    previous = load_partial(name, args.out_dir)
    out, path = run_and_save(
        name, body=body, device=profile.device, profile=profile.name, out_dir=args.out_dir,
        run=lambda partial: run(cfg, device=profile.device, allow_synthetic=profile.allow_synthetic, progress=True,
                                checkpoints=True, partial=partial, previous=previous))
    for label, row in summarise(out["histories"], out["params"]).items():
        print(f"{label:>10} {row['params']:>8,} params, {row['seeds']} seeds: train error "
              f"{row['train_err_mean']:.1%} ± {row['train_err_std']:.1%}, test error {row['test_err_mean']:.1%} ± "
              f"{row['test_err_std']:.1%}, {row['seconds_per_epoch']:.1f} s/epoch")
    print(f"wrote {path}")
    return 0
