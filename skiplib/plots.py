"""One matplotlib style for the whole course: curves, gradient-norm bars (Chapter 1 on)."""

from __future__ import annotations

from typing import Mapping

import matplotlib as mpl
import matplotlib.pyplot as plt

# plain nets warm, residual nets cool, so "with or without skips" reads at a glance
PALETTE = {
    "plain": ("#b2182b", "#ef8a62", "#f4a582", "#d6604d", "#67001f"),
    "resnet": ("#2166ac", "#67a9cf", "#92c5de", "#4393c3", "#053061"),
    "other": ("#1b7837", "#762a83", "#5aae61", "#9970ab", "#00441b"),
}


def use_style() -> None:
    """Apply the course style (readable sizes, light grid, no top/right spines)."""
    mpl.rcParams.update({
        "figure.figsize": (7.0, 4.0),
        "figure.dpi": 100,
        "savefig.dpi": 150,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlesize": 12,
        "axes.labelsize": 11,
        "legend.fontsize": 9,
        "legend.frameon": False,
        "lines.linewidth": 1.8,
    })


def color_for(label: str, index: int = 0) -> str:
    """Colour for a run label: plain nets red, residual nets blue, anything else green."""
    family = "plain" if label.startswith("plain") else "resnet" if label.startswith(("resnet", "res")) else "other"
    colors = PALETTE[family]
    return colors[index % len(colors)]


def plot_curves(histories: Mapping[str, object], key: str = "train_err", ax=None, *, linestyle: str = "-",
                percent: bool = True, label_suffix: str = "", alpha: float = 1.0):
    """Plot one metric per epoch for several runs. ``histories`` maps labels to
    :class:`skiplib.train.History` objects or lists of per-epoch records."""
    ax = ax or plt.gca()
    counts: dict[str, int] = {}
    for label, hist in histories.items():
        records = getattr(hist, "records", hist)
        if not records:
            raise ValueError(f"run {label!r} has no epochs to plot")
        family = label.rstrip("0123456789-")
        idx = counts.get(family, 0)
        counts[family] = idx + 1
        xs = [r["epoch"] for r in records]
        ys = [r[key] * (100 if percent else 1) for r in records]
        ax.plot(xs, ys, linestyle=linestyle, color=color_for(label, idx), alpha=alpha, label=f"{label}{label_suffix}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(key.replace("_", " ").replace("err", "error") + (" (%)" if percent else ""))
    ax.legend()
    return ax


def plot_grad_norms(norms: Mapping[str, Mapping[str, float]], ax=None, *, logy: bool = True):
    """Gradient norm per layer (x: layer index from input to output) for several models."""
    ax = ax or plt.gca()
    for i, (label, per_layer) in enumerate(norms.items()):
        values = list(per_layer.values())
        ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, color=color_for(label, i), label=label)
    ax.set_xlabel("layer (input → output)")
    ax.set_ylabel("‖∂loss/∂W‖")
    if logy:
        ax.set_yscale("log")
    ax.legend()
    return ax
