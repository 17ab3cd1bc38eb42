"""Chapter 9 (skip connections in the Transformer's residual stream): run sizes per profile, the depth
sweep over residual wirings, the warm-up rescue, and the figures.

Model: :mod:`skiplib.models.transformer`; task: :mod:`skiplib.data.sequences`; training:
:mod:`skiplib.train.sequence`; measurements: :mod:`skiplib.analysis.stream`; grader:
:mod:`skiplib.exercises.ch09_transformer`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from skiplib.data.sequences import SortTask
from skiplib.models.transformer import Transformer, TransformerConfig
from skiplib.profile import Profile
from skiplib.train.sequence import fit_sequence

SWEEP_WIRINGS = ("pre_ln", "post_ln", "none")
LABELS = {"pre_ln": "pre-LN", "post_ln": "post-LN", "none": "no residual", "rezero": "ReZero"}
COLORS = {"pre_ln": "tab:blue", "post_ln": "tab:orange", "none": "tab:gray", "rezero": "tab:green"}


def config(profile: Profile) -> dict:
    """Sizes for Chapter 9. The ``cpu`` profile's sweep (three wirings at depths 2, 6 and 12, 300 Adam
    steps each at a learning rate of 3e-3 without warm-up) plus one warmed-up post-LN run is sized to
    take about three of the notebook's four minutes on 2 cores; ``smoke`` trains tiny models for 30 steps."""
    sizes = profile.choose(
        smoke={"length": 4, "n_symbols": 5, "n_embd": 32, "n_head": 2, "depths": [1, 3], "steps": 30,
               "batch_size": 32, "warmup_steps": 10, "grad_depths": [2, 4], "probe_batch": 64, "log_every": 5},
        cpu={"length": 8, "n_symbols": 10, "n_embd": 64, "n_head": 4, "depths": [2, 6, 12], "steps": 300,
             "batch_size": 64, "warmup_steps": 100, "grad_depths": [3, 6, 12, 24], "probe_batch": 256, "log_every": 10},
        gpu={"length": 8, "n_symbols": 10, "n_embd": 64, "n_head": 4, "depths": [2, 6, 12, 24], "steps": 300,
             "batch_size": 64, "warmup_steps": 100, "grad_depths": [3, 6, 12, 24, 48], "probe_batch": 256,
             "log_every": 10},
    )
    # the learning rate is the experiment's lever: at 1e-3 every wiring with a skip trains at these depths
    return {**sizes, "lr": 3e-3, "seed": 0, "profile": profile.name}


def task(cfg: Mapping) -> SortTask:
    """The sorting task at the profile's size."""
    return SortTask(cfg["length"], cfg["n_symbols"])


def build(cfg: Mapping, wiring: str, depth: int, *, seed: int | None = None) -> Transformer:
    """A freshly initialised model of the profile's width; the same seed gives the same weights."""
    t = task(cfg)
    torch.manual_seed(cfg["seed"] if seed is None else seed)
    return Transformer(TransformerConfig(t.vocab_size, t.block_size, depth, cfg["n_head"], cfg["n_embd"], wiring))


def train_one(cfg: Mapping, wiring: str, depth: int, *, warmup_steps: int = 0, lr: float | None = None,
              device: torch.device | str = "cpu") -> tuple[Transformer, dict]:
    """Build and train one model; returns it (on ``device``) and :func:`~skiplib.train.sequence.fit_sequence`'s record."""
    model = build(cfg, wiring, depth)
    record = fit_sequence(model, task(cfg), steps=cfg["steps"], lr=cfg["lr"] if lr is None else lr,
                          batch_size=cfg["batch_size"], warmup_steps=warmup_steps, seed=cfg["seed"],
                          device=device, log_every=cfg["log_every"])
    return model, {"wiring": wiring, "depth": depth, "warmup_steps": warmup_steps, **record}


def depth_sweep(cfg: Mapping, *, wirings: Sequence[str] = SWEEP_WIRINGS, device: torch.device | str = "cpu",
                progress: bool = True) -> tuple[dict, list[dict]]:
    """Every wiring at every depth of the profile, no warm-up. Returns the trained models keyed by
    ``(wiring, depth)`` and one record per run."""
    from tqdm.auto import tqdm

    jobs = [(w, d) for d in cfg["depths"] for w in wirings]
    models, records = {}, []
    for wiring, depth in tqdm(jobs, desc="depth sweep", disable=not progress):
        models[wiring, depth], record = train_one(cfg, wiring, depth, device=device)
        records.append(record)
    return models, records


def final_loss(record: Mapping) -> float:
    """The training loss at the end of a run (mean over its last logged window); infinite if it diverged."""
    return float("inf") if record["diverged"] or not record["train_loss"] else record["train_loss"][-1]


def chance_loss(cfg: Mapping) -> float:
    """The loss of a model that has learned nothing but the symbols' frequencies: ln(n_symbols)."""
    return float(torch.log(torch.tensor(float(cfg["n_symbols"]))))


def plot_sweep(records: Sequence[Mapping], cfg: Mapping) -> Figure:
    """One panel per depth: the training-loss curve of every wiring, with the chance level dashed."""
    depths = sorted({r["depth"] for r in records})
    fig, axes = plt.subplots(1, len(depths), figsize=(3.6 * len(depths), 3.4), sharey=True, squeeze=False)
    for ax, depth in zip(axes[0], depths):
        for r in (r for r in records if r["depth"] == depth):
            ax.plot(r["steps"], r["train_loss"], color=COLORS[r["wiring"]], label=LABELS[r["wiring"]])
        ax.axhline(chance_loss(cfg), color="black", lw=0.8, ls="--")
        ax.set_title(f"{depth} layers")
        ax.set_xlabel("Adam step")
        ax.set_yscale("log")
    axes[0][0].set_ylabel("training loss (answer tokens)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_grad_norms(norms: Mapping[tuple[str, int], torch.Tensor], ax: Axes) -> None:
    """Gradient norm per layer at initialisation: one line per (wiring, depth), layers on a 0-1 axis."""
    styles = ["-", "--", ":", "-."]
    depths = sorted({d for _, d in norms})
    for (wiring, depth), g in norms.items():
        position = ((torch.arange(len(g)) + 1) / len(g)).tolist()
        ax.plot(position, torch.as_tensor(g).tolist(), color=COLORS[wiring], marker=".",
                ls=styles[depths.index(depth) % len(styles)], label=f"{LABELS[wiring]}, {depth} layers")
    ax.set_xlabel("layer (fraction of the depth)")
    ax.set_ylabel("gradient norm of the layer's weights")
    ax.set_yscale("log")
    ax.legend(fontsize=7, ncol=2)


def plot_stream(norms: torch.Tensor, shares: Mapping[str, torch.Tensor], axes: Sequence[Axes]) -> None:
    """Left: the stream's norm after each layer. Right: each layer's share of the final stream (attention
    and MLP stacked), the embedding's share as the first bar."""
    axes[0].plot(range(len(norms)), torch.as_tensor(norms).tolist(), marker="o", color=COLORS["pre_ln"])
    axes[0].set_xlabel("after layer (0 = embedding)")
    axes[0].set_ylabel("mean norm of a token's stream vector")
    attn, mlp = torch.as_tensor(shares["attn"]).tolist(), torch.as_tensor(shares["mlp"]).tolist()
    layers = range(1, len(attn) + 1)
    axes[1].bar([0], [float(shares["embedding"])], color="tab:purple", label="embedding")
    axes[1].bar(layers, attn, color="tab:cyan", label="attention")
    axes[1].bar(layers, mlp, bottom=attn, color="tab:red", label="MLP")
    axes[1].axhline(0, color="black", lw=0.6)
    axes[1].set_xlabel("layer (0 = embedding)")
    axes[1].set_ylabel("share of the final stream")
    axes[1].legend(fontsize=8)
