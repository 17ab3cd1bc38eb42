"""One matplotlib style for the whole course: curves, gradient-norm bars, reference runs (Chapter 1 on)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import matplotlib as mpl
import matplotlib.pyplot as plt

from skiplib.results import reference_run

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


def show_reference(name: str, draw: Callable[[dict, object], object], *, ncols: int = 1,
                   figsize: tuple[float, float] | None = None, glue_name: str | None = None,
                   **subplots_kw) -> dict | None:
    """Show the committed reference run ``name`` (``results/<name>.json``) below a chapter's live run.

    Where skiplib ships no such run, print what is missing and how to make it
    (:func:`skiplib.results.missing_result_message`) and return None. Otherwise make one row of
    ``ncols`` axes (``subplots_kw`` go to ``plt.subplots``), let ``draw(result, axes)`` plot the run
    on them (``axes`` as ``plt.subplots`` gives it: one Axes, or an array for ``ncols > 1``), caption
    the figure with the run's provenance, show it and return the result. Chapters 1, 7 and 8.

    With ``glue_name`` the figure is glued under that name instead of shown, for a numbered
    ``glue:figure`` with a caption; a missing run then glues a figure that says what is missing,
    so the page's figure and caption still stand.
    """
    result, note = reference_run(name)
    if result is None:
        print(note)
        if glue_name is not None:
            fig, ax = plt.subplots(figsize=(7, 1.2))
            ax.axis("off")
            ax.text(0, 0.5, note, fontsize=9, va="center", wrap=True)
            _glue_figure(glue_name, fig)
        return None
    fig, axes = plt.subplots(1, ncols, figsize=figsize or (5.5 * ncols, 4.0), **subplots_kw)
    draw(result, axes)
    fig.suptitle(note, fontsize=10)
    if glue_name is None:
        plt.show()
    else:
        _glue_figure(glue_name, fig)
    return result


def _glue_figure(name: str, fig) -> None:
    from skiplib.glue import glue

    glue(name, fig, display=False)
    plt.close(fig)


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


def plot_segmentation(images, columns: Mapping[str, object], truth=None, *, boundary: int = 1, size: float = 1.9):
    """Chapter 6: one row per image; the first column is the image, then one column per entry
    of ``columns`` (label → ``[N, H, W]`` label maps), each drawn over the image with its
    ``boundary``-class pixels in blue. With ``truth`` given, true boundary pixels a column
    misses are painted red, so lost boundaries stand out. Returns the figure."""
    import numpy as np

    imgs = np.asarray(images, dtype=np.float32)
    imgs = imgs[:, 0] if imgs.ndim == 4 else imgs
    maps = {k: np.asarray(v) for k, v in columns.items()}
    if any(m.shape != imgs.shape for m in maps.values()):
        raise ValueError(f"every column needs label maps of shape {imgs.shape}, got "
                         f"{ {k: m.shape for k, m in maps.items()} }")
    ref = None if truth is None else np.asarray(truth) == boundary
    n, ncol = len(imgs), len(maps) + 1
    fig, axes = plt.subplots(n, ncol, figsize=(size * ncol, size * n), squeeze=False)
    blue, red = np.array([0.13, 0.40, 0.67]), np.array([0.84, 0.15, 0.16])
    for i in range(n):
        lo, hi = np.percentile(imgs[i], [1, 99])
        # float64 under NumPy 1 too (NumPy 2 promotes by itself: lo and hi are float64 scalars)
        gray = np.clip((imgs[i] - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float64)[..., None].repeat(3, -1)
        axes[i, 0].imshow(gray, interpolation="nearest")
        for j, m in enumerate(maps.values(), start=1):
            rgb = 0.55 * gray + 0.45
            rgb[m[i] == boundary] = blue
            if ref is not None:
                rgb[ref[i] & (m[i] != boundary)] = red
            axes[i, j].imshow(rgb, interpolation="nearest")
    for j, title in enumerate(["image", *maps]):
        axes[0, j].set_title(title, fontsize=10)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    axes[-1, 0].set_xlabel("x (pixels)")
    axes[-1, 0].set_ylabel("y (pixels)")
    fig.tight_layout()
    return fig


def plot_landscape_contour(surface: Mapping, ax=None, *, key: str = "loss", levels=None, log: bool = True,
                           title: str | None = None):
    """Contour plot of a 2-D surface from :func:`skiplib.analysis.landscape.surface_2d` (Chapter 8).
    ``log`` draws log10 of the loss, so a wide range stays readable; the origin is marked.
    ``levels="quantile"`` puts the 15 contour levels at quantiles of the surface's own values, so a
    flat region gets as many contours as a steep one (small bumps become visible)."""
    import numpy as np

    ax = ax or plt.gca()
    z = np.asarray(surface[key], dtype=float)
    z = np.log10(np.maximum(z, 1e-12)) if log else z
    if isinstance(levels, str):
        if levels != "quantile":
            raise ValueError(f"levels must be None, a number, a sequence or 'quantile', got {levels!r}")
        levels = np.unique(np.quantile(z, np.linspace(0, 1, 17)[1:-1]))
    cs = ax.contour(surface["xs"], surface["ys"], z, levels=levels if levels is not None else 20, cmap="viridis")
    ax.clabel(cs, cs.levels[::4], inline=True, fontsize=7, fmt="%.2f")
    ax.plot([0], [0], marker="*", color="black", markersize=9)
    ax.set_xlabel("direction 1 (α)")
    ax.set_ylabel("direction 2 (β)")
    ax.set_aspect("equal")
    ax.grid(False)
    if title:
        ax.set_title(title)
    return cs


def plot_landscape_3d(surface: Mapping, ax, *, key: str = "loss", log: bool = True, title: str | None = None):
    """3-D surface plot of a 2-D loss surface on a ``projection="3d"`` axis (Chapter 8)."""
    import numpy as np

    z = np.asarray(surface[key], dtype=float)
    z = np.log10(np.maximum(z, 1e-12)) if log else z
    xx, yy = np.meshgrid(surface["xs"], surface["ys"])
    ax.plot_surface(xx, yy, z, cmap="viridis", linewidth=0, antialiased=True, rstride=1, cstride=1)
    ax.set_xlabel("α")
    ax.set_ylabel("β")
    ax.set_zlabel("log10 loss" if log else key)
    if title:
        ax.set_title(title)
    return ax
