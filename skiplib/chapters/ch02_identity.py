"""Chapter 2 (the identity-mapping construction): the run sizes the notebook uses and the
figures it draws from its measurements.

The construction itself (exact deepening, noise, shrinking, identity fitting) lives in
:mod:`skiplib.analysis.identity`; its grader in :mod:`skiplib.exercises.ch02_identity`; the
nested-classes picture in :func:`skiplib.diagrams.nested_classes`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from skiplib import plots
from skiplib.profile import Profile


def config(profile: Profile) -> dict:
    """Every size Chapter 2's notebook uses, for the active profile."""
    p = profile.choose
    return {
        "image_size": p(smoke=16, cpu=16, gpu=32),
        "train_subset": p(smoke=512, cpu=10_000, gpu=25_000),
        "test_subset": p(smoke=256, cpu=2_000, gpu=5_000),
        "batch_size": 128,
        "epochs": p(smoke=1, cpu=6, gpu=6),
        "lr": 0.1,
        "weight_decay": 5e-4,
        "shallow_depth": p(smoke=8, cpu=14, gpu=20),
        "deep_depth": p(smoke=14, cpu=32, gpu=56),
        "zero_init_steps": p(smoke=4, cpu=80, gpu=400),
        "identity_layers": p(smoke=(2, 4), cpu=(2, 4, 8, 16), gpu=(2, 4, 8, 16, 32)),
        "identity_images": p(smoke=(32, 16), cpu=(512, 256), gpu=(2048, 512)),
        "identity_crop": p(smoke=8, cpu=8, gpu=16),
        "identity_steps": p(smoke=5, cpu=200, gpu=1000),
        "identity_lr": 0.05,
        "sigmas": p(smoke=(0.01, 0.1), cpu=(0.001, 0.003, 0.01, 0.03, 0.1, 0.3),
                    gpu=(0.001, 0.003, 0.01, 0.03, 0.1, 0.3)),
        "noise_images": p(smoke=256, cpu=2_000, gpu=5_000),
        "shrink_points": p(smoke=6, cpu=25, gpu=25),
    }


def plot_shrink(factors: Sequence[float], curves: Mapping[str, Mapping[str, Sequence[float]]]) -> Figure:
    """Figure 2.4: one panel per block kind (``curves["plain"]``, ``curves["residual"]``), each with
    the block's distance to the zero map (``"to_zero"``) and to the identity (``"to_id"``) as all
    its parameters are scaled by the factors, from 1 on the left down to the smallest."""
    missing = {"plain", "residual"} - set(curves)
    if missing:
        raise ValueError(f"curves needs the block kinds 'plain' and 'residual', missing {sorted(missing)}")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, kind in zip(axes, ("plain", "residual")):
        color = plots.color_for("plain" if kind == "plain" else "resnet")
        ax.plot(factors, curves[kind]["to_zero"], "-", color=color,
                label="distance to the zero map  $\\|f(x)\\|/\\|x\\|$")
        ax.plot(factors, curves[kind]["to_id"], "--", color=color,
                label="distance to the identity  $\\|f(x)-x\\|/\\|x\\|$")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("weight scale $t$ (all parameters × $t$)")
        ax.set_title(f"{kind} block")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("relative distance")
    return fig


def running_mean(values: Sequence[float], window: int) -> np.ndarray:
    """Means of every ``window`` consecutive values (``len(values) - window + 1`` of them)."""
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= len(values):
        raise ValueError(f"window must be an int from 1 to len(values) = {len(values)}, got {window!r}")
    return np.convolve(values, np.ones(window) / window, mode="valid")


def plot_zero_init_steps(curves: Mapping[str, Sequence[float]], *, window: int, title: str) -> Figure:
    """Figure 2.5: the per-step training loss (faint) and its running mean over ``window`` steps of
    two runs, ``curves`` = {label of the default initialisation: losses, label of zero-init: losses}."""
    if len(curves) != 2:
        raise ValueError(f"curves needs exactly two runs (default init, then zero-init), got {list(curves)}")
    fig, ax = plt.subplots()
    for color, (label, losses) in zip((plots.color_for("resnet"), plots.color_for("zero-init")), curves.items()):
        smooth = running_mean(losses, window)
        ax.plot(np.arange(len(losses)) + 1, losses, color=color, alpha=0.25, lw=1)
        ax.plot(np.arange(len(smooth)) + window, smooth, color=color, label=label)  # x: a window's last step
    ax.set_xlabel("SGD step")
    ax.set_ylabel("training loss (batch)")
    ax.set_title(title)
    ax.legend()
    return fig


def plot_noise_sweep(sigmas: Sequence[float], losses: Sequence[float], *, base_loss: float,
                     he_range: tuple[float, float], shallow: int, deep: int,
                     marker: tuple[float, float] | None = None,
                     train_mode: tuple[Sequence[float], float] | None = None) -> Figure:
    """Figure 2.6: the deep copy's training loss against the noise σ on its inserted blocks, the
    exact copy's loss (dashed), the range of He-initialised weight scales (shaded) and, for the
    slider, one more ``marker = (σ, loss)`` point. ``train_mode = (losses, base_loss)`` adds the
    same sweep measured with batch statistics, on the copy whose BNs were fitted to the data."""
    curves = [losses] + ([] if train_mode is None else [train_mode[0]])
    if any(len(c) != len(sigmas) for c in curves):
        raise ValueError(f"one loss per sigma needed, got {len(sigmas)} sigmas and {[len(c) for c in curves]} losses")
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(sigmas, losses, "o-", color=plots.color_for("plain"),
            label=f"plain-{deep} copy, eval mode (stored statistics)")
    ax.axhline(base_loss, color="gray", ls="--", label=f"exact copy (= plain-{shallow}), eval mode")
    if train_mode is not None:
        ax.plot(sigmas, train_mode[0], "s-", color=plots.color_for("plain", 3),
                label="copy with BN fitted to the data, training mode")
        ax.axhline(train_mode[1], color="gray", ls=":", label=f"plain-{shallow}, training mode")
    ax.axvspan(*he_range, color="gray", alpha=0.15, label="std of He-initialised weights")
    if marker is not None:
        sigma, loss = marker
        ax.plot([sigma], [loss], "*", markersize=14, color="black", label=f"σ = {sigma:.3g} (eval mode)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("noise σ on the inserted conv weights")
    ax.set_ylabel("training loss")
    ax.set_title("Moving away from the exact copy")
    ax.legend(fontsize=7)
    return fig


def identity_verdict(ks: Sequence[int], fits: Mapping[str, Sequence[Mapping[str, float]]]) -> str:
    """The sentence under Figure 2.3, computed from the run: at which stack depths ``ks`` the residual
    stacks (``fits["residual"]``, dicts with ``before``/``after`` errors) end closer to the identity
    than the plain ones, and, where they do not, how far from it they started."""
    plain, res = fits["plain"], fits["residual"]
    if not (len(ks) == len(plain) == len(res)) or not ks:
        raise ValueError(f"need one plain and one residual fit per depth: {len(ks)} depths, "
                         f"{len(plain)} plain and {len(res)} residual fits")
    better = [r["after"] < p["after"] for r, p in zip(res, plain)]
    if all(better):
        return (f"Residual blocks of the same layers end lower at every depth, from {res[0]['after']:.4f} "
                f"at $k = {ks[0]}$ to {res[-1]['after']:.4f} at $k = {ks[-1]}$.")
    lost = [i for i, b in enumerate(better) if not b]
    won = [ks[i] for i, b in enumerate(better) if b]
    where = ", ".join(f"$k = {ks[i]}$ (from {res[i]['before']:.2f} at initialisation to {res[i]['after']:.3f}, "
                      f"against the plain stack's {plain[i]['after']:.3f})" for i in lost)
    return (f"Residual blocks of the same layers end lower at $k = {', '.join(map(str, won)) or 'none'}$, "
            f"but not at {where}. Those residual stacks start far from the identity, since each of their "
            "He-initialised branches adds its own output to the signal, and the same training does not "
            "bring them back: a deep residual stack is near the identity only if its branches start near "
            "zero, which is what the zero-initialised last batch norm below arranges.")
