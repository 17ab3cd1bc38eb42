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
from skiplib.analysis.variance import KINDS
from skiplib.profile import Profile

# the runs of the training section: what each net is, and its colour (no BN warm, with BN cool)
NORM_FREE_RUNS: dict[str, tuple[str, str]] = {
    "he": ("no BN, He init", plots.PALETTE["plain"][0]),
    "skipinit": ("no BN, SkipInit", plots.PALETTE["other"][1]),
    "fixup": ("no BN, Fixup", plots.PALETTE["other"][0]),
    "bn": ("batch norm (standard ResNet)", plots.PALETTE["resnet"][0]),
}
_KIND_STYLE = {"he": (plots.PALETTE["plain"][0], "-"), "bn": (plots.PALETTE["resnet"][0], "-"),
               "fixup_scale": (plots.PALETTE["other"][1], "-"), "zero_gamma": (plots.PALETTE["resnet"][4], "-"),
               "skipinit": (plots.PALETTE["other"][0], "--"), "fixup": (plots.PALETTE["other"][2], ":")}


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
        # signal size at initialisation: a stack of `var_depth` blocks of width 16 on `var_images` images
        "var_depth": p(smoke=32, cpu=128, gpu=128),
        "var_images": p(smoke=16, cpu=64, gpu=64),
        # then a short training of ResNet-`nf_depth` with and without batch norm (``NORM_FREE_RUNS``)
        "nf_depth": p(smoke=20, cpu=32, gpu=110),
        "nf_train": p(smoke=256, cpu=4_000, gpu=10_000),
        "nf_epochs": p(smoke=1, cpu=2, gpu=3),
        "nf_runs": p(smoke=("he", "fixup", "bn"), cpu=("he", "fixup", "bn"), gpu=("he", "skipinit", "fixup", "bn")),
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


def plot_variance(profiles: Mapping[str, Sequence[float]]) -> Figure:
    """Figure 2.7: the mean square of the signal after each block, at initialisation, one line per
    kind of :data:`skiplib.analysis.variance.KINDS` (log scale; index 0 is the stack's input)."""
    unknown = set(profiles) - set(KINDS)
    if unknown or not profiles:
        raise ValueError(f"profiles needs kinds among {list(KINDS)}, got {sorted(profiles)}")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for kind, values in profiles.items():
        color, ls = _KIND_STYLE[kind]
        ax.plot(np.arange(len(values)), values, ls, color=color, lw=2 if ls == "-" else 2.5, label=KINDS[kind])
    ax.set_yscale("log")
    ax.set_xlabel("block $l$ (0: the stack's input)")
    ax.set_ylabel("mean square of the signal after block $l$")
    ax.set_title("A residual stack at initialisation")
    ax.legend(fontsize=8)
    return fig


def norm_free_verdict(results: Mapping[str, Mapping[str, float]], chance: float) -> str:
    """The sentence after the training runs, from their results: ``results[name]`` holds
    ``diverged`` and, for a run that did not diverge, its last-epoch ``loss``; a run "trains" when
    that loss is below ``chance`` (ln 10 for CIFAR-10)."""
    unknown = set(results) - set(NORM_FREE_RUNS)
    if unknown or not results:
        raise ValueError(f"results needs runs among {list(NORM_FREE_RUNS)}, got {sorted(results)}")
    parts = []
    for name, r in results.items():
        label = NORM_FREE_RUNS[name][0]
        if r["diverged"]:
            parts.append(f"{label}: diverged (the loss became NaN in the first epoch)")
        elif r["loss"] < chance:
            parts.append(f"{label}: trains, last-epoch loss {r['loss']:.3f}")
        else:
            parts.append(f"{label}: did not diverge but stalled at a loss of {r['loss']:.3f}, not below chance")
    return "; ".join(parts) + "."
