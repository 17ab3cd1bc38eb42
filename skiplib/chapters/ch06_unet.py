"""Chapter 6 (U-Net): the run sizes the notebook uses, the tables of its scores and the figures
of its runs.

The task: :mod:`skiplib.data.cells`; the model: :mod:`skiplib.models.unet`; training:
:mod:`skiplib.train.segmentation`; grader: :mod:`skiplib.exercises.ch06_unet`; the "U":
:func:`skiplib.diagrams.unet`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from skiplib import plots
from skiplib.blocks.unet import skip_mode
from skiplib.profile import Profile
from skiplib.train import History

# the scores of skiplib.train.segmentation.evaluate_segmentation that the chapter reports, as its tables name them
SCORE_NAMES = {"dice": "Dice", "iou": "IoU", "boundary_f1": "boundary F1 (1 px)", "cell_f1": "cell F1"}


def config(profile: Profile) -> dict:
    """Sizes for Chapter 6. ``cpu``: a U-Net of base width 8 and depth 3 (64x64 images, 8x8 at the
    bottleneck), trained with and without long skips, with each single skip removed or kept alone,
    and with the two controls (detached and gradient-only skips), 6 epochs of 640 images each."""
    recipe = {"lr": 3e-3, "batch_size": 32, "weight": (1.0, 3.0), "batch_norm": True, "seed": 0}
    sizes = profile.choose(
        smoke={"train_n": 96, "test_n": 32, "size": 32, "base": 4, "depth": 3, "epochs": 1, "ablation_epochs": 1},
        cpu={"train_n": 640, "test_n": 200, "size": 64, "base": 8, "depth": 3, "epochs": 6, "ablation_epochs": 6},
        gpu={"train_n": 2000, "test_n": 500, "size": 96, "base": 16, "depth": 4, "epochs": 12, "ablation_epochs": 6},
    )
    return {**recipe, **sizes, "train_seed": 1, "test_seed": 2, "profile": profile.name}


def _score_cells(scores: Mapping[str, float]) -> str:
    missing = [k for k in SCORE_NAMES if k not in scores]
    if missing:
        raise ValueError(f"scores lack {missing}; expected the keys of evaluate_segmentation: {list(SCORE_NAMES)}")
    return " | ".join(f"{scores[k]:.3f}" for k in SCORE_NAMES)


def scores_table(scores: Mapping[str, Mapping[str, float]], params: Mapping[str, int]) -> str:
    """A Markdown table: one row per model (``scores`` label -> its test scores), with its
    parameter count from ``params`` and every score of :data:`SCORE_NAMES` to three decimals."""
    rows = [f"| {label} | {params[label]:,} | {_score_cells(s)} |" for label, s in scores.items()]
    header = ("| model | parameters | " + " | ".join(SCORE_NAMES.values()) + " |\n|---|---:|"
              + "---:|" * len(SCORE_NAMES) + "\n")
    return header + "\n".join(rows)


def skips_kept(mask: Sequence[bool | str], size: int) -> str:
    """The resolutions of the long skips that ``mask`` keeps (level 0 at ``size``, halved per level),
    e.g. ``"64², 16²"``, or ``"none"``. Entries are bools or modes of
    :data:`skiplib.blocks.unet.SKIP_MODES`; a skip that is not ``"full"`` is named with its mode,
    e.g. ``"64² detached"``."""
    kept = []
    for i, entry in enumerate(mask):
        mode = skip_mode(entry)
        if mode != "none":
            kept.append(f"{size // 2**i}²" + ("" if mode == "full" else " " + mode.replace("_", " ")))
    return ", ".join(kept) or "none"


def ablation_table(masks: Mapping[str, Sequence[bool | str]], scores: Mapping[str, Mapping[str, float]],
                   params: Mapping[str, int], size: int) -> str:
    """A Markdown table of the skip ablation: one row per variant (label -> its ``skips`` mask of bools or modes),
    the skips it keeps (:func:`skips_kept`), its parameters and its scores."""
    rows = [f"| {label} | {skips_kept(mask, size)} | {params[label]:,} | {_score_cells(scores[label])} |"
            for label, mask in masks.items()]
    header = ("| variant | skips kept (resolution) | parameters | " + " | ".join(SCORE_NAMES.values())
              + " |\n|---|---|---:|" + "---:|" * len(SCORE_NAMES) + "\n")
    return header + "\n".join(rows)


def plot_learning_curves(histories: Mapping[str, History]) -> Figure:
    """Training (solid) and test (dashed) loss per epoch (left) and test Dice and boundary F1
    (right) of each run; the run labelled ``"with skips"`` is drawn in the residual blue, every
    other one in the plain red."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for label, h in histories.items():
        color = plots.color_for("resnet" if label == "with skips" else "plain")
        epochs_axis = h.column("epoch")
        axes[0].plot(epochs_axis, h.column("train_loss"), color=color, label=f"{label}, train")
        axes[0].plot(epochs_axis, h.column("test_loss"), color=color, ls="--", alpha=0.7, label=f"{label}, test")
        axes[1].plot(epochs_axis, h.column("dice"), color=color, marker="o", label=f"{label}: Dice")
        axes[1].plot(epochs_axis, h.column("boundary_f1"), color=color, ls=":", marker="s", markersize=3,
                     label=f"{label}: boundary F1 (1 px)")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("weighted cross-entropy")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("test score (boundary class)")
    axes[1].set_ylim(0, 1)
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    return fig


def plot_level_maps(image: torch.Tensor, target: torch.Tensor,
                    maps: Mapping[tuple[str, int], torch.Tensor]) -> Figure:
    """The input image and its target (first column), then per level the two maps that meet in
    its ``Up``: ``maps[("skip", level)]`` (top) and ``maps[("upsampled", level)]`` (bottom), each
    ``[H, W]``, level 0 being full resolution."""
    depth = len({level for _, level in maps})
    expected = {(kind, level) for kind in ("skip", "upsampled") for level in range(depth)}
    if set(maps) != expected:
        raise ValueError(f"maps needs a 'skip' and an 'upsampled' map for each level 0..{depth - 1}, "
                         f"got {sorted(maps)}")
    fig, axes = plt.subplots(2, depth + 1, figsize=(2.3 * (depth + 1), 4.8))
    axes[0, 0].imshow(image, cmap="gray")
    axes[0, 0].set_title("input")
    axes[1, 0].imshow(target, cmap="gray_r")
    axes[1, 0].set_title("target")
    for level in range(depth):
        for row, kind in enumerate(("skip", "upsampled")):
            m = maps[kind, level]
            axes[row, level + 1].imshow(m, cmap="magma")
            axes[row, level + 1].set_title(f"{kind}, level {level}\n{m.shape[0]}×{m.shape[1]}", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    axes[1, 0].set_xlabel("x (pixels)")
    axes[1, 0].set_ylabel("y (pixels)")
    fig.tight_layout()
    return fig
