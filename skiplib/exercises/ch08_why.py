"""Chapter 8 (why skips work): the grader of its coding exercise.

:func:`check_filter_normalize`: grades a learner's filter normalisation (Li et al. 2018)
  against :func:`skiplib.analysis.landscape.filter_normalize`, naming the usual mistakes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from skiplib.analysis.landscape import filter_normalize
from skiplib.exercises._runner import run_checks

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
    cases = []
    for s in _SHAPES:  # a direction, and a weight whose filters have different norms
        d, w = torch.randn(s, generator=g), torch.randn(s, generator=g)
        cases.append((d, w * (0.1 + torch.rand(s[0], *[1] * (len(s) - 1), generator=g))))

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
                return (f"for shape {tuple(w.shape)}: filter norms {on[:3].tolist()} ... "
                        f"should be those of w: {wn[:3].tolist()} ...")
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
