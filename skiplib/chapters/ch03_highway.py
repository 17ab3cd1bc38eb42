"""Chapter 3's experiments: the depth experiment of Srivastava et al. (2015, Fig. 1) on
flattened CIFAR-10, and short gate-bias runs.

* :func:`flat_cifar10`: a stratified CIFAR-10 subset, downsampled and flattened to vectors;
* :func:`train_fc`: train one thin FC net (plain or highway) with SGD; a run that diverges
  is reported with an infinite loss instead of raising, so "best of a learning-rate sweep"
  still works;
* :func:`depth_sweep`: every (kind, depth, lr) of the sweep; keeps the best run per (kind, depth);
* :func:`plot_depth_sweep`, :func:`plot_highway_vs_resnet`: the chapter's figures of those runs;
* :func:`plot_reference`, :func:`reference_summary`: the stored ``highway-depth`` reference run's
  figure and sentence. The highway-against-residual comparison is :mod:`skiplib.chapters.ch03_conv`.

The highway-layer picture is :func:`skiplib.diagrams.highway_layer`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn
from tqdm.auto import tqdm

from skiplib import plots
from skiplib.data import DeviceLoader, load_cifar10, subset, to_float
from skiplib.models import create_model
from skiplib.profile import Profile, seed_everything
from skiplib.train import History, fit


def config(profile: Profile) -> dict:
    """Sizes for Chapter 3.

    * depth experiment (the paper's Fig. 1): thin FC nets of ``depths`` hidden layers on
      CIFAR-10 flattened at ``fc_image_size`` (8x8x3 = 192 inputs), ``fc_train_subset`` images,
      ``fc_epochs`` epochs per learning rate in ``fc_lrs``; the best final training loss counts;
    * gate-bias sweep: the highway net of depth ``bias_depth`` trained with each of ``gate_biases``;
    * highway vs residual: ``conv_depth``-layer CIFAR nets at ``conv_image_size``, same recipe.

    ``cpu`` (2 cores): about 2.5 minutes for the whole notebook, of which about 1 for the depth sweep,
    25 s for the gate-bias runs and 80 s for the two conv nets. ``gpu``: on an H200 shared with five
    other processes, the sweep's runs took 7-23 s each up to depth 50 with 8 epochs, and the notebook
    did not finish in 233 s; these thin FC nets are bound by per-layer host overhead, which a GPU does
    not remove, so the sweep trains 6 epochs on 6,000 images (1.5x the ``cpu`` sweep's image passes,
    45% of the first ``gpu`` setting's).
    """
    sizes = profile.choose(
        smoke={"depths": (10, 20), "fc_train_subset": 512, "fc_epochs": 1, "fc_lrs": (0.1, 0.5),
               "gate_biases": (0.0, -2.0), "bias_depth": 20, "bias_epochs": 1,
               "conv_depth": 8, "conv_image_size": 16, "conv_train_subset": 256, "conv_test_subset": 128,
               "conv_epochs": 1, "gate_batch": 256},
        cpu={"depths": (10, 20, 50, 100), "fc_train_subset": 4_000, "fc_epochs": 6, "fc_lrs": (0.01, 0.1, 0.5),
             "gate_biases": (1.0, 0.0, -1.0, -2.0, -3.0, -4.0), "bias_depth": 50, "bias_epochs": 6,
             "conv_depth": 20, "conv_image_size": 16, "conv_train_subset": 5_000, "conv_test_subset": 1_000,
             "conv_epochs": 4, "gate_batch": 1_000},
        gpu={"depths": (10, 20, 50, 100), "fc_train_subset": 6_000, "fc_epochs": 6, "fc_lrs": (0.01, 0.1, 0.5),
             "gate_biases": (1.0, 0.0, -1.0, -2.0, -3.0, -4.0), "bias_depth": 100, "bias_epochs": 6,
             "conv_depth": 56, "conv_image_size": 32, "conv_train_subset": 20_000, "conv_test_subset": 5_000,
             "conv_epochs": 4, "gate_batch": 2_000},
    )
    recipe = {"batch_size": 128, "momentum": 0.9, "fc_weight_decay": 0.0, "fc_image_size": 8,
              # deeper nets start with more negative gate biases, as in the paper (-1 ... -3); -4 at depth 100
              "fc_gate_bias": {10: -1.0, 20: -2.0, 50: -3.0, 100: -4.0}, "bias_lr": 0.3,
              "conv_lr": 0.1, "conv_weight_decay": 5e-4, "schedule": "onecycle", "seed": 0}
    return {**recipe, **sizes, "profile": profile.name}



def flat_cifar10(n: int | None, image_size: int = 8, *, seed: int = 0, allow_synthetic: bool = False,
                 verbose: bool = True) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``n`` CIFAR-10 training images resized to ``image_size`` and flattened: ``(x [n, 3*s*s], y, source)``."""
    ds = subset(load_cifar10("train", allow_synthetic=allow_synthetic, verbose=verbose), n, seed)
    return to_float(ds.images, image_size).flatten(1), ds.labels, ds.source


@dataclass
class FCRun:
    """One training run of the depth experiment: its settings, history (None if it diverged) and model."""

    kind: str
    depth: int
    lr: float
    history: History | None
    model: nn.Module
    seconds: float

    @property
    def final_loss(self) -> float:
        """Training loss of the last epoch (averaged over its batches); inf if the run diverged."""
        return math.inf if self.history is None else self.history.last["train_loss"]


def train_fc(kind: str, depth: int, lr: float, x: torch.Tensor, y: torch.Tensor, *, epochs: int,
             batch_size: int = 128, gate_bias: float = -2.0, seed: int = 0, momentum: float = 0.9,
             weight_decay: float = 0.0, schedule: str = "onecycle", device: str | torch.device = "cpu") -> FCRun:
    """Train ``create_model(f"{kind}_fc", depth=depth)`` on (x, y); same seed, same batches for every run."""
    seed_everything(seed)
    kw = {"gate_bias": gate_bias} if kind == "highway" else {}
    model = create_model(f"{kind}_fc", depth=depth, in_features=x.shape[1], **kw)
    loader = DeviceLoader(x, y, batch_size, shuffle=True, device=device, seed=seed)
    t0 = time.perf_counter()
    try:
        history = fit(model, loader, None, epochs=epochs, lr=lr, momentum=momentum, weight_decay=weight_decay,
                      schedule=schedule, device=device, channels_last=False, progress=False, desc=f"{kind}-{depth}")
    except FloatingPointError:  # diverged: this lr is simply too large for this net
        history = None
    return FCRun(kind, depth, lr, history, model, time.perf_counter() - t0)


def depth_sweep(x: torch.Tensor, y: torch.Tensor, *, depths, lrs, epochs: int, kinds=("plain", "highway"),
                gate_bias: float | dict = -2.0, verbose: bool = True, runs: dict | None = None,
                progress: bool = True, **kw) -> tuple[dict, dict]:
    """Train every (kind, depth, lr); ``gate_bias`` is one value or a dict depth -> value.
    Returns ``(best, all_runs)``: ``best[kind, depth]`` is the run with the lowest final training
    loss (the paper's "best training loss" per configuration), ``all_runs[kind, depth, lr]`` every
    run (models of non-best runs are dropped to save memory).
    ``runs`` (a dict) is filled with each run as it finishes, so an interrupted caller keeps them; a
    run it holds already (e.g. read back from an interrupted sweep's partial results) is not trained
    again. ``progress`` shows a bar over the sweep's runs."""
    best: dict = {}
    runs = {} if runs is None else runs
    say = tqdm.write if progress else print  # a line above the bar, not through it
    with tqdm(total=len(kinds) * len(depths) * len(lrs), desc="depth sweep", unit="run", disable=not progress) as bar:
        for kind in kinds:
            for depth in depths:
                for lr in lrs:
                    gb = gate_bias[depth] if isinstance(gate_bias, dict) else gate_bias
                    if (kind, depth, lr) not in runs:
                        runs[kind, depth, lr] = train_fc(kind, depth, lr, x, y, epochs=epochs, gate_bias=gb, **kw)
                    run = runs[kind, depth, lr]
                    bar.update(1)
                    if verbose:
                        say(f"{kind:8s} depth {depth:3d} lr {lr:<5g} final training loss {run.final_loss:.3f} "
                            f"({run.seconds:.1f} s)")
                    if (kind, depth) not in best or run.final_loss < best[kind, depth].final_loss:
                        best[kind, depth] = run
                for lr in lrs:
                    if runs[kind, depth, lr] is not best[kind, depth]:
                        runs[kind, depth, lr].model = None
    return best, runs


def finished_runs(previous: dict) -> dict:
    """The runs of a ``highway-depth`` partial result as :class:`FCRun` objects keyed (kind, depth, lr),
    with their loss curves and without models, so that :func:`depth_sweep` skips them."""
    out = {}
    for r in previous.get("runs", []):
        curve = r["train_loss"]
        history = None if curve is None else History([{"epoch": i + 1, "train_loss": v} for i, v in enumerate(curve)])
        out[r["kind"], r["depth"], r["lr"]] = FCRun(r["kind"], r["depth"], r["lr"], history, None, 0.0)
    return out


def best_runs(runs: dict) -> dict:
    """``{(kind, depth): run}`` with the lowest final training loss among ``runs`` (keyed (kind, depth, lr))."""
    best: dict = {}
    for (kind, depth, _), run in runs.items():
        if (kind, depth) not in best or run.final_loss < best[kind, depth].final_loss:
            best[kind, depth] = run
    return best


def _finite(loss: float) -> float | None:
    return None if math.isinf(loss) else loss  # JSON has no infinity: a diverged run is null


def plot_depth_sweep(best: Mapping[tuple[str, int], FCRun], depths: Sequence[int]) -> Figure:
    """The paper's Fig. 1 for our runs: the best final training loss of the plain and highway nets
    against depth (left, with a uniform guess's ln 10), and the loss per epoch of every best run
    (right, plain dashed, highway solid; diverged runs have no curve). ``best`` is
    :func:`depth_sweep`'s first result."""
    missing = [(kind, d) for kind in ("plain", "highway") for d in depths if (kind, d) not in best]
    if missing:
        raise ValueError(f"best has no run for {missing}")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    _draw_depth_sweep(best, depths, ax1, ax2)
    return fig


def _draw_depth_sweep(best: Mapping[tuple[str, int], FCRun], depths: Sequence[int], ax1, ax2) -> None:
    for kind in ("plain", "highway"):
        color = plots.color_for(kind) if kind == "plain" else plots.PALETTE["other"][0]
        ax1.plot(depths, [best[kind, d].final_loss for d in depths], marker="o", color=color, label=kind)
    ax1.axhline(math.log(10), color="grey", linestyle=":", label="chance (ln 10)")
    ax1.set_xscale("log")
    ax1.set_xticks(depths)
    ax1.set_xticklabels([str(d) for d in depths])
    ax1.set_xlabel("depth (hidden layers)")
    ax1.set_ylabel("best final training loss")
    ax1.legend()
    for kind, style in (("plain", "--"), ("highway", "-")):
        for i, d in enumerate(depths):
            run = best[kind, d]
            if run.history is not None:
                color = plots.PALETTE["plain" if kind == "plain" else "other"][i]
                ax2.plot(run.history.column("epoch"), run.history.column("train_loss"), style, color=color,
                         label=f"{kind}-{d}")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("training loss (best lr)")
    ax2.legend(ncol=2)


def reference_best(result: dict) -> tuple[dict, list[int]]:
    """``(best, depths)`` of a ``highway-depth`` result: the best run per (kind, depth), as
    :func:`depth_sweep` gives it for a live run, and the depths that have both kinds."""
    best = best_runs(finished_runs(result))
    depths = sorted(d for d in {d for _, d in best} if ("plain", d) in best and ("highway", d) in best)
    return best, depths


def plot_reference(result: dict, axes) -> None:
    """Draw a ``highway-depth`` result on two axes (:func:`skiplib.plots.show_reference`), as
    :func:`plot_depth_sweep` draws a live run."""
    best, depths = reference_best(result)
    _draw_depth_sweep(best, depths, *axes)
    axes[0].set_title("best final training loss (reference run)")
    axes[1].set_title("loss per epoch, best lr (reference run)")


def reference_summary(result: dict) -> str:
    """The sentence under the depth reference figure, computed from a ``highway-depth`` result:
    its budget and each family's best final training loss at the shallowest and deepest depth."""
    cfg = result["config"]
    best, depths = reference_best(result)
    if len(depths) < 2:
        return "The reference run has not finished two depths for both families yet."
    first, last = depths[0], depths[-1]
    loss = {(k, d): best[k, d].final_loss for k in ("plain", "highway") for d in (first, last)}
    text = (f"In the reference run ({cfg['fc_epochs']} epochs per learning rate on {cfg['fc_train_subset']:,} "
            f"images, learning rates {', '.join(f'{lr:g}' for lr in cfg['fc_lrs'])}) the plain net's best "
            f"training loss goes from {loss['plain', first]:.3f} at depth {first} to {loss['plain', last]:.3f} "
            f"at depth {last}, the highway net's from {loss['highway', first]:.3f} to {loss['highway', last]:.3f}")
    hw_gap = loss["plain", last] - loss["highway", last]
    rise = {k: loss[k, last] - loss[k, first] for k in ("plain", "highway")}
    if hw_gap > 0.3 and rise["highway"] < 0.5 * rise["plain"]:
        trend = "do not degrade with depth at all" if rise["highway"] <= 0 else "degrade far less with depth"
        text += (f": with {cfg['fc_epochs']} epochs the deepest highway net still ends {hw_gap:.2f} below the "
                 f"plain net of its depth, and the highway nets {trend}, the ordering of the paper's Fig. 1.")
    elif hw_gap > 0:
        text += (f": the deepest highway net ends {hw_gap:.2f} below the plain net of its depth; from depth "
                 f"{first} to {last} the plain nets' loss changes by {rise['plain']:+.2f}, the highway nets' by "
                 f"{rise['highway']:+.2f}, a weaker form of the paper's ordering.")
    else:
        text += (": at this budget the deepest plain net trains at least as well as the highway net, so the "
                 "paper's ordering does not hold here.")
    if best["plain", last].lr == min(cfg["fc_lrs"]):
        text += (f" The plain net of depth {last} did best at the smallest learning rate of the sweep, so a "
                 "smaller one might have lowered its loss further.")
    return text


def plot_highway_vs_resnet(histories: Mapping[str, History], seconds: Sequence[float]) -> Figure:
    """Training (solid) and test (dashed) error per epoch of the conv nets (left) and their
    measured ``seconds`` per epoch, one per history in the same order (right)."""
    if len(seconds) != len(histories):
        raise ValueError(f"one time per run needed, got {len(seconds)} for {len(histories)} runs")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.0))
    plots.plot_curves(histories, "train_err", ax=a1, label_suffix=" train")
    plots.plot_curves(histories, "test_err", ax=a1, linestyle="--", label_suffix=" test", alpha=0.7)
    a1.set_ylabel("error (%)")
    a1.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    a2.bar(list(histories), seconds, color=[plots.color_for(k) for k in histories])
    a2.set_ylabel("seconds per epoch (measured)")
    a2.set_xlabel("network")
    fig.tight_layout()
    return fig


def main(args) -> int:
    """CLI entry (``python -m skiplib highway``): Chapter 3's depth experiment in ``args.profile``;
    writes ``results/highway-depth-<profile>.json`` (best training loss per family and depth, every run's
    final loss and loss curve, provenance). ``--part conv`` runs :func:`skiplib.chapters.ch03_conv.main`."""
    if getattr(args, "part", "depth") == "conv":
        from skiplib.chapters import ch03_conv

        return ch03_conv.main(args)
    from skiplib.profile import get_profile
    from skiplib.results import check_outputs, git_commit, load_partial, provenance, reusable_partial, save_partial, save_result

    torch.set_flush_denormal(True)  # deep plain nets produce denormals, which are very slow on CPUs
    profile = get_profile(args.profile)
    cfg = config(profile)
    if args.epochs is not None:
        cfg["fc_epochs"] = args.epochs
    name = f"highway-depth-{profile.name}" + (f"-{args.tag}" if getattr(args, "tag", None) else "")
    check_outputs(args.out_dir, checkpoints=False)  # before minutes of training, not after (no checkpoints here)
    runs, source, t0, commit = {}, "not loaded yet", time.perf_counter(), git_commit()
    stored = {k: (v if not isinstance(v, dict) else {str(d): b for d, b in v.items()}) for k, v in cfg.items()}

    def payload(seconds: float) -> dict:
        return {
            "experiment": "highway-depth",
            "config": stored,
            "best": {f"{k}{d}": {"lr": r.lr, "final_train_loss": _finite(r.final_loss)}
                     for (k, d), r in best_runs(runs).items()},
            "runs": [{"kind": r.kind, "depth": r.depth, "lr": r.lr, "final_train_loss": _finite(r.final_loss),
                      "train_loss": r.history.column("train_loss") if r.history is not None else None}
                     for r in runs.values()],
            "provenance": provenance(profile.device, source, seconds, profile.name, commit),
        }

    try:
        x, y, source = flat_cifar10(cfg["fc_train_subset"], cfg["fc_image_size"], seed=cfg["seed"],
                                    allow_synthetic=profile.allow_synthetic)
        previous = reusable_partial(load_partial(name, args.out_dir), stored, source)
        runs.update(finished_runs(previous) if previous else {})  # an interrupted sweep's runs are not trained again
        t0 = time.perf_counter()
        depth_sweep(x, y, depths=cfg["depths"], lrs=cfg["fc_lrs"], epochs=cfg["fc_epochs"],
                    gate_bias=cfg["fc_gate_bias"], batch_size=cfg["batch_size"], momentum=cfg["momentum"],
                    weight_decay=cfg["fc_weight_decay"], schedule=cfg["schedule"], seed=cfg["seed"],
                    device=profile.device, runs=runs)
    except KeyboardInterrupt:
        save_partial(name, payload(time.perf_counter() - t0), args.out_dir)
        raise
    path = save_result(name, payload(time.perf_counter() - t0), args.out_dir)
    print(f"wrote {path}")
    return 0
