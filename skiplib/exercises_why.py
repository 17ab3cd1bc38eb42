"""Chapter 8 (why skips work): the run sizes of the chapter and the grader of its coding exercise.

* :func:`chapter_config`: every size the notebook uses, per profile;
* :func:`check_filter_normalize`: grades a learner's filter normalisation (Li et al. 2018)
  against :func:`skiplib.landscape.filter_normalize`, naming the usual mistakes.
"""

from __future__ import annotations

from typing import Callable

import torch

from skiplib.exercises import run_checks
from skiplib.landscape import filter_normalize
from skiplib.profile import Profile


def chapter_config(profile: Profile) -> dict:
    """Sizes for Chapter 8.

    ``cpu`` (2 cores, <= 4 minutes for the whole page): plain-56 and ResNet-56 trained on 2,000
    CIFAR-10 images at 16x16 for 8 epochs, surfaces on an 11x11 grid spanning [-0.5, 0.5]^2 over
    256 of those training images held as one batch; the lesion study uses plain-20/ResNet-20
    (plain-56 does not leave chance level in this budget, so deleting its blocks shows nothing). ``gpu`` is Li et al.'s setting shortened to
    minutes on a Colab T4: 32x32 images, 12k training images, a 31x31 grid (theirs is 51x51) on a
    1,000-image training subset (one batch). ``smoke`` only checks that
    everything runs.
    """
    recipe = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "onecycle", "batch_size": 128, "seed": 0}
    sizes = profile.choose(
        smoke={"depth": 20, "image_size": 16, "train_subset": 512, "test_subset": 256, "epochs": 1, "span": 0.5,
               "lesion_depth": 20,
               "grid_points": 5, "surface_images": 64, "surface_batch": None, "slice_points": 11,
               "grad_depth": 20, "grad_batch": 32,
               "shatter_depths": [1, 4, 12], "shatter_width": 64, "path_samples": 1, "path_images": 16},
        cpu={"depth": 56, "image_size": 16, "train_subset": 2_000, "test_subset": 500, "epochs": 8, "span": 0.5,
             "lesion_depth": 20, "grid_points": 11, "surface_images": 256, "surface_batch": None, "slice_points": 41,
             "grad_depth": 56, "grad_batch": 64,
             "shatter_depths": [1, 2, 5, 10, 24, 50], "shatter_width": 200, "path_samples": 4, "path_images": 64},
        gpu={"depth": 56, "image_size": 32, "train_subset": 12_000, "test_subset": 5_000, "epochs": 8, "span": 1.0,
             "lesion_depth": 56,
             "grid_points": 31, "surface_images": 1_000, "surface_batch": 1_000, "slice_points": 101,
             "grad_depth": 110, "grad_batch": 128,
             "shatter_depths": [1, 2, 5, 10, 24, 50, 100], "shatter_width": 200, "path_samples": 16, "path_images": 256},
    )
    return {**recipe, **sizes, "direction_seeds": [1, 2], "shatter_points": 256, "profile": profile.name}


# ---------------------------------------------------------------------------------------------
# The coding exercise: filter normalisation.

_SHAPES = ((8, 3, 3, 3), (10, 16), (4, 6, 1, 1))  # conv 3x3, linear, conv 1x1


def _variants(d: torch.Tensor, w: torch.Tensor) -> dict[str, tuple[torch.Tensor, str]]:
    """Typical wrong answers and the hint that names each."""
    out = {}
    out["layer"] = (d * w.norm() / d.norm(),
                    "you scaled the whole tensor to the weight's norm (layer-wise normalisation); "
                    "scale each filter d[i] to the norm of w[i] separately")
    if d.dim() > 2 or d.shape[1] > 1:
        dims = tuple(i for i in range(d.dim()) if i != 1)
        vn = torch.linalg.vector_norm
        out["axis"] = (d * vn(w, dim=dims, keepdim=True) / vn(d, dim=dims, keepdim=True),
                       "you normalised per *input* channel (dim 1); a filter is one output channel "
                       "w[i] (dim 0), all its input channels and taps together")
    flat = d.reshape(d.shape[0], -1)
    out["unit"] = ((flat / flat.norm(dim=1, keepdim=True)).reshape(d.shape),
                   "each filter of your direction has norm 1; multiply by the norm of the matching weight filter w[i]")
    out["weight"] = (w.clone(), "you returned the weights themselves: the random direction is lost")
    return out


def check_filter_normalize(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, verbose: bool = True) -> bool:
    """Grade ``fn(direction, weight) -> new direction``: each filter ``direction[i]`` rescaled to
    ``weight[i].norm()`` (conv: one output channel; linear: one row), inputs left unchanged."""
    g = torch.Generator().manual_seed(0)
    cases = [(torch.randn(s, generator=g), torch.randn(s, generator=g) * (0.1 + torch.rand(s[0], *[1] * (len(s) - 1), generator=g)))
             for s in _SHAPES]

    def call(d: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        out = fn(d.clone(), w.clone())
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"expected a tensor, got {type(out).__name__}")
        return out

    def shape() -> str | None:
        for d, w in cases:
            out = call(d, w)
            if out.shape != d.shape:
                return f"for a weight of shape {tuple(w.shape)} the direction should keep that shape, got {tuple(out.shape)}"
        return None

    def norms() -> str | None:
        for d, w in cases:
            out = call(d, w)
            if out.shape != d.shape:
                return "skipped until the shape is right"
            want = filter_normalize(d, w)
            if torch.allclose(out, want, rtol=1e-4, atol=1e-6):
                continue
            for got, hint in _variants(d, w).values():
                if torch.allclose(out, got, rtol=1e-4, atol=1e-6):
                    return f"for shape {tuple(w.shape)}: {hint}"
            wn, on = w.reshape(len(w), -1).norm(dim=1), out.reshape(len(out), -1).norm(dim=1)
            if not torch.allclose(on, wn, rtol=1e-4):
                return f"for shape {tuple(w.shape)}: filter norms {on[:3].tolist()} ... should be those of w: {wn[:3].tolist()} ..."
            return f"for shape {tuple(w.shape)}: the norms are right but the filters no longer point along the random direction"
        return None

    def inputs_unchanged() -> str | None:
        d, w = cases[0]
        d2, w2 = d.clone(), w.clone()
        fn(d2, w2)
        if not torch.equal(w2, w):
            return "your function changed the weight tensor; it must only read it"
        if not torch.equal(d2, d):
            return "your function changed the direction in place; return a new tensor instead (e.g. d * scale)"
        return None

    return run_checks("Filter normalisation", [
        ("output has the weight's shape", shape),
        ("each filter scaled to the matching weight filter's norm", norms),
        ("inputs left unchanged", inputs_unchanged),
    ], verbose=verbose)
