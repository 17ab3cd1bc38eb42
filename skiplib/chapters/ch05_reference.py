"""Chapter 5's reference run (``python -m skiplib densenet``): the chapter's DenseNet-BC against
its ResNet (:func:`skiplib.chapters.ch05_densenets.train_models`, the notebook's own training) once
per seed, and on each trained DenseNet the connection ablation
(:func:`skiplib.analysis.reuse.connection_ablation`) summarised as the chapter summarises it
(:func:`ablation_numbers`). Writes ``densenet-<profile>[-<tag>].json``: ``config``, ``runs`` (one
record per model and seed: ``model``, ``seed``, ``parameters``, ``test_err``, ``train_err``,
``seconds``, ``history``; the DenseNet's also ``ablation``: :func:`ablation_numbers` and the
``increase`` maps, None where not connected), ``summary`` (means and standard
deviations over the seeds) and ``provenance``. Interrupted, it writes the seeds that finished to
``<name>.partial.json``; the same command skips them and resumes the interrupted seed's training
from its checkpoints.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from skiplib.analysis.reuse import ConnectionAblation, connection_ablation
from skiplib.analysis.stats import mean_std
from skiplib.chapters import ch05_densenets as ch
from skiplib.chapters.ch01_degradation import profile_and_config, result_name
from skiplib.profile import get_profile
from skiplib.results import load_partial, reusable_partial, run_and_save

EXPERIMENT = "densenet"
# what ablation_numbers gives as numbers; summary() averages each over the seeds
ABLATION_KEYS = ("base_loss", "far", "far_se", "near", "near_se", "diff", "diff_se", "far_z", "diff_z",
                 "far_share", "blocks_far", "in_rise", "layer_rise", "top_rise", "rank_corr", "n_lower", "n_cuts")


def seed_config(cfg: dict, seed: int) -> dict:
    """The chapter's config for one seed: ``cfg`` without ``seeds``, with ``seed``; with the profile's
    epochs and seed 0 it is exactly the notebook's, so both share the same checkpoints."""
    return {**{k: v for k, v in cfg.items() if k != "seeds"}, "seed": seed}


def ablation_numbers(reuse: Sequence[torch.Tensor], ablation: ConnectionAblation) -> dict:
    """The chapter's numbers on one connection ablation: the pooled deep-layer rises of
    :func:`~skiplib.chapters.ch05_densenets.far_and_near` (``far``, ``near``, ``diff`` and their
    standard errors, ``far_z`` and ``diff_z`` in standard errors, ``far_share`` of the base loss,
    ``blocks_far``: blocks whose far rise clears three standard errors, ``blocks``: the per-block
    rows), the mean rise of cutting the block input (``in_rise``) and a dense layer's maps
    (``layer_rise``), the largest cut (``top_cut``, ``top_rise``), the rank correlation with the
    weight heatmaps ``reuse`` (``rank_corr``) and how many of the ``n_cuts`` cuts lowered the loss."""
    reach = ch.far_and_near(ablation)
    pooled = reach[-1]
    top_cut, top_rise = ch.largest_cut(ablation)
    in_rise = torch.cat([m[0] for m in ablation.increase]).mean().item()
    layer_rise = torch.cat([m[1:][~torch.isnan(m[1:])] for m in ablation.increase]).mean().item()
    return {"base_loss": ablation.base_loss, "images": ablation.images,
            **{k: pooled[k] for k in ("far", "far_se", "near", "near_se", "diff", "diff_se", "far_cuts")},
            "far_z": pooled["far"] / pooled["far_se"], "diff_z": pooled["diff"] / pooled["diff_se"],
            "far_share": pooled["far"] / ablation.base_loss,
            "blocks_far": sum(r["far"] > 3 * r["far_se"] for r in reach[:-1]), "blocks": reach,
            "in_rise": in_rise, "layer_rise": layer_rise, "top_cut": top_cut, "top_rise": top_rise,
            "rank_corr": ch.rank_correlation(reuse, ablation.increase),
            "n_lower": sum(int((m < 0).sum()) for m in ablation.increase),
            "n_cuts": sum(int((~torch.isnan(m)).sum()) for m in ablation.increase)}


def run_seed(cfg: dict, seed: int, *, device: torch.device, allow_synthetic: bool = False,
             checkpoints: bool = False, info: dict | None = None) -> list[dict]:
    """Train the chapter's pair with seed ``seed`` (data subset, initialisation, batch order) and
    ablate the DenseNet on ``cfg["ablation_images"]`` test images drawn with the same seed; one
    record per model (see the module's docstring). ``info`` receives the data's info dict."""
    scfg = seed_config(cfg, seed)
    train_loader, test_loader, meta = ch.loaders(scfg, device, allow_synthetic=allow_synthetic, verbose=False)
    if info is not None:
        info.update(meta)
    out = ch.train_models(scfg, train_loader, test_loader, device=device, checkpoints=checkpoints)
    records = []
    for label in out["labels"]:
        h = out["histories"][label]
        records.append({"model": label, "seed": seed, "parameters": out["params"][label],
                        "test_err": h.last["test_err"], "train_err": h.last["train_err"],
                        "seconds": sum(h.column("seconds")), "history": h.records})
    dense = out["models"][out["labels"][0]].to(device)
    x, y = ch.ablation_images(test_loader, scfg["ablation_images"], seed=seed)
    t0 = time.perf_counter()
    ablation = connection_ablation(dense, (x, y))
    numbers = ablation_numbers(ch.reuse_maps(dense.cpu()), ablation)
    # the loss rise of every cut (None: not connected), for a mean map over the seeds
    maps = [[[None if np.isnan(v) else round(v, 6) for v in row] for row in m.tolist()] for m in ablation.increase]
    records[0]["ablation"] = {**numbers, "increase": maps, "seconds": time.perf_counter() - t0}
    return records


def _seed_stats(values: Sequence[float]) -> dict:
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "min": float(min(values)), "max": float(max(values)), "n": len(values)}


def summary(runs: Sequence[Mapping]) -> dict:
    """Means and standard deviations (and min, max, n) over the seeds: per model ``test_err``,
    ``train_err``, ``seconds`` (and ``parameters``); ``ablation``: each of :data:`ABLATION_KEYS`."""
    out: dict = {"models": {}, "ablation": {}, "seeds": sorted({r["seed"] for r in runs})}
    for model in dict.fromkeys(r["model"] for r in runs):
        rs = [r for r in runs if r["model"] == model]
        out["models"][model] = {"parameters": rs[0]["parameters"],
                                **{k: _seed_stats([r[k] for r in rs]) for k in ("test_err", "train_err", "seconds")}}
    ablations = [r["ablation"] for r in runs if "ablation" in r]
    if ablations:
        out["ablation"] = {k: _seed_stats([a[k] for a in ablations]) for k in ABLATION_KEYS}
    return out


def run(cfg: dict, *, device: torch.device | str | None = None, allow_synthetic: bool = False,
        progress: bool = True, checkpoints: bool = False, partial: dict | None = None,
        previous: dict | None = None) -> dict:
    """Every seed of ``cfg["seeds"]``: ``{"runs", "summary", "info", "seconds"}``. ``partial`` (a dict)
    receives ``"info"`` and each seed's records in ``"runs"`` as soon as the seed finishes; the seeds
    of ``previous`` (such a partial result saved as JSON, made with the same ``cfg`` and data) are
    taken as they are instead of training them again."""
    seeds = cfg.get("seeds") or [cfg["seed"]]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    device = torch.device(device) if device is not None else get_profile().device
    partial = {} if partial is None else partial
    info = partial.setdefault("info", {})
    runs = partial.setdefault("runs", [])
    if previous:
        source = ch.loaders(seed_config(cfg, seeds[0]), device, allow_synthetic=allow_synthetic,
                            verbose=False)[2]["source"]
        previous = reusable_partial(previous, cfg, source)
    done = {r["seed"] for r in previous["runs"]} if previous else set()
    t0 = time.perf_counter()
    for seed in tqdm(seeds, desc="densenet seeds", unit="seed", disable=not progress):
        if seed in done:  # finished before an interruption: read back, not trained again
            runs.extend(r for r in previous["runs"] if r["seed"] == seed)
            info.update(previous.get("info") or {"source": previous["provenance"]["data_source"]})
        else:
            runs.extend(run_seed(cfg, seed, device=device, allow_synthetic=allow_synthetic, checkpoints=checkpoints,
                                 info=info))
    return {"runs": list(runs), "summary": summary(runs), "info": info, "seconds": time.perf_counter() - t0}


def main(args: argparse.Namespace) -> int:
    """CLI entry: run :func:`run` in ``args.profile`` (``--epochs``, ``--seeds`` override the profile's)
    and write ``densenet-<profile>[-<tag>].json`` into ``--out-dir``."""
    profile, cfg = profile_and_config(args, ch.config)
    cfg.setdefault("seeds", [cfg["seed"]])
    device = profile.device

    def body(out: dict) -> dict:
        runs = out.get("runs", [])
        return {"experiment": EXPERIMENT, "config": cfg, "runs": runs, "info": out.get("info", {}),
                "summary": summary(runs) if runs else {}}

    name = result_name("densenet", profile, args)
    previous = load_partial(name, args.out_dir)
    out, path = run_and_save(
        name, body=body, device=device, profile=profile.name, out_dir=args.out_dir,
        run=lambda partial: run(cfg, device=device, allow_synthetic=profile.allow_synthetic, progress=True,
                                checkpoints=True, partial=partial, previous=previous))
    for model, row in out["summary"]["models"].items():
        print(f"{model:>16}: {row['parameters']:,} params, test error {row['test_err']['mean']:.1%} "
              f"± {row['test_err']['std']:.1%} over {row['test_err']['n']} seed(s)")
    ab = out["summary"]["ablation"]
    print(f"ablation: far source {ab['far']['mean']:+.4f} ± {ab['far']['std']:.4f} nats, previous layer "
          f"{ab['near']['mean']:+.4f}, block input {ab['in_rise']['mean']:+.4f} vs dense layer "
          f"{ab['layer_rise']['mean']:+.4f}, rank correlation {ab['rank_corr']['mean']:.2f}")
    print(f"wrote {path}")
    return 0


# The reference run the chapter shows (results/<REFERENCE>.json) and the command that made it.
REFERENCE = "densenet-cpu-long"
REFERENCE_COMMAND = ("python -m skiplib densenet --profile cpu --epochs 12 --seeds 0 1 2 --tag long "
                     "--out-dir results")
# the rows of the chapter's comparison: (ablation key, what it is, format)
ROWS = (("far", "loss rise, one far source of a deep layer (nats)", ".4f"),
        ("near", "loss rise, the previous layer (nats)", ".4f"),
        ("far_z", "far-source rise in standard errors of the image sample", ".1f"),
        ("diff_z", "far minus previous layer, in standard errors", ".1f"),
        ("in_rise", "loss rise, the block input, mean over targets (nats)", ".4f"),
        ("layer_rise", "loss rise, one dense layer's maps, mean over targets (nats)", ".4f"),
        ("rank_corr", "rank correlation, weight heatmap vs ablation", ".2f"),
        ("base_loss", "test loss of the intact network (nats)", ".3f"))


def side(diff_z: float) -> str:
    """How a far cut compares with cutting the previous layer, as the chapter words it: beyond two
    standard errors of their difference "more than" or "less than", else "about as much as"."""
    return "more than" if diff_z > 2 else "less than" if diff_z < -2 else "about as much as"


def ablations(result: Mapping) -> list[dict]:
    """The ablation records of a ``densenet`` result, one per seed."""
    return [r["ablation"] for r in result["runs"] if "ablation" in r]


def comparison_table(result: Mapping, live: Mapping) -> str:
    """A Markdown table: each of :data:`ROWS` in the live run (:func:`ablation_numbers`) and in the
    reference run (mean ± standard deviation over its seeds, and the range)."""
    stats = summary(result["runs"])["ablation"]
    n = stats["far"]["n"]
    lines = [f"| | this run | reference: mean ± std over {n} seed{'s' if n != 1 else ''} | range |",
             "|---|---:|---:|---:|"]
    for key, what, fmt in ROWS:
        s = stats[key]
        lines.append(f"| {what} | {live[key]:{fmt}} | {s['mean']:{fmt}} ± {s['std']:{fmt}} | "
                     f"{s['min']:{fmt}} to {s['max']:{fmt}} |")
    return "\n".join(lines)


def findings(result: Mapping, live: Mapping) -> str:
    """What the reference run says about the chapter's three ablation claims, seed by seed, and
    whether the live run's reading of each holds there: far sources matter (their rise clears three
    standard errors), a far cut costs a deep layer about as much as the previous layer, the block
    input matters most; and how well the weight heatmap predicts the ablation."""
    abl, cfg = ablations(result), result["config"]
    n = len(abl)
    far_clear = sum(a["far"] > 3 * a["far_se"] for a in abl)
    sides = [side(a["diff_z"]) for a in abl]
    live_side = side(live["diff_z"])
    input_most = sum(a["in_rise"] > a["layer_rise"] for a in abl)
    corr = [a["rank_corr"] for a in abl]
    mean = lambda key: float(np.mean([a[key] for a in abl]))  # noqa: E731

    def held(count: int, live_ok: bool) -> str:
        where = f"in all {n} seeds" if count == n else f"in none of the {n} seeds" if not count else \
            f"in {count} of {n} seeds"
        return where + (" (this run: yes)" if live_ok else " (this run: no)")

    same_side = sum(s == live_side for s in sides)
    return (f"The reference run trained the same pair {cfg['epochs']} epochs ({n} seed{'s' if n != 1 else ''}; "
            f"this run: one seed). Far sources: cutting one far source of a deep layer raised the loss by "
            f"{mean('far'):.4f} nats on average, clearing three standard errors of the image sample "
            f"{held(far_clear, live['far'] > 3 * live['far_se'])}; block by block, in "
            f"{', '.join(str(a['blocks_far']) for a in abl)} of the {len(abl[0]['blocks']) - 1} blocks "
            f"(this run: {live['blocks_far']}). "
            f"Against cutting the previous layer, a far cut cost "
            + "; ".join(f"{w} it in {sides.count(w)} seed{'s' if sides.count(w) != 1 else ''}"
                        for w in dict.fromkeys(sides))
            + f" (this run: {live_side}, so its reading holds in {same_side} of {n} seeds). "
            f"The block input weighed most (its cuts cost more than a dense layer's maps: {mean('in_rise'):.4f} "
            f"against {mean('layer_rise'):.4f} nats on average) {held(input_most, live['in_rise'] > live['layer_rise'])}. "
            f"The heatmap's ranking and the ablation's correlate at {min(corr):.2f} to {max(corr):.2f} over the "
            f"seeds (this run: {live['rank_corr']:.2f}).")


def plot_reference(result: Mapping, axes, live: Mapping | None = None) -> None:
    """Draw a ``densenet`` result on two axes (:func:`skiplib.plots.show_reference`): test error per
    epoch of each model, mean over the seeds with a band of one standard deviation (left), and the
    ablation's mean loss rises, far source, previous layer, block input and a dense layer's maps,
    each seed a dot, the bar their mean, ``live`` (:func:`ablation_numbers` of the live run) a black x (right)."""
    from skiplib import plots

    ax1, ax2 = axes
    for model in dict.fromkeys(r["model"] for r in result["runs"]):
        errs = np.array([[100 * e["test_err"] for e in r["history"]] for r in result["runs"] if r["model"] == model])
        epochs = np.arange(1, errs.shape[1] + 1)
        color = plots.color_for("densenet" if model.startswith("Dense") else "resnet")
        ax1.plot(epochs, errs.mean(0), color=color, marker="o", label=f"{model} ({len(errs)} seeds)")
        ax1.fill_between(epochs, errs.mean(0) - errs.std(0), errs.mean(0) + errs.std(0), color=color, alpha=0.2)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("test error (%)")
    ax1.set_title("test error (reference run)")
    ax1.legend(fontsize=9)
    keys = {"far": "far source", "near": "previous layer", "in_rise": "block input", "layer_rise": "dense layer"}
    abl = ablations(result)
    for j, key in enumerate(keys):
        values = [a[key] for a in abl]
        ax2.bar(j, np.mean(values), color=plots.color_for("densenet"), alpha=0.5)
        ax2.plot([j] * len(values), values, "o", color=plots.color_for("densenet"),
                 label="reference, one seed" if j == 0 else None)
        if live is not None:
            ax2.plot(j, live[key], "x", color="black", markersize=9, label="this run" if j == 0 else None)
    ax2.set_xticks(range(len(keys)), list(keys.values()))
    ax2.set_ylabel("test-loss rise when cut (nats)")
    ax2.set_title("connection ablation, mean per cut (reference run)")
    ax2.legend(fontsize=9)


def story(result: Mapping, live: Mapping) -> str:
    """The sentence that says whether longer training keeps this run's reading of far against near
    cuts (:func:`side`): confirmed when every seed of the reference agrees with it, overturned when
    every seed agrees on another reading, unsettled when the seeds disagree."""
    sides = [side(a["diff_z"]) for a in ablations(result)]
    mine = side(live["diff_z"])
    if len(set(sides)) > 1:
        return (f"Whether a far cut costs a deep layer more than its previous layer is not settled by the "
                f"reference: its seeds disagree ({', '.join(sides)}), so this run's reading ({mine}) is one "
                "draw of a noisy outcome.")
    if sides[0] == mine:
        return (f"Longer training confirms this run's reading: in every seed a far cut costs a deep layer "
                f"{mine} cutting its previous layer.")
    return (f"Longer training overturns this run's reading: in every seed of the reference a far cut costs a "
            f"deep layer **{sides[0]}** cutting its previous layer, where in this run it cost {mine} that. This run's "
            "verdict above is a property of a short run, not of DenseNets.")


def efficiency_sentence(result: Mapping) -> str:
    """The reference run's final test errors per model (mean ± standard deviation over the seeds)
    and its budget, for the efficiency figure's text."""
    models = summary(result["runs"])["models"]
    parts = [f"{m} ({row['parameters']:,} parameters) {row['test_err']['mean']:.1%} ± {row['test_err']['std']:.1%}"
             for m, row in models.items()]
    n = next(iter(models.values()))["test_err"]["n"]
    return (f"After {result['config']['epochs']} epochs, mean test error ± standard deviation over {n} "
            f"seed{'s' if n != 1 else ''}: " + "; ".join(parts) + ".")
