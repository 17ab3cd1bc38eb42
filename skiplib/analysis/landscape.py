"""Loss landscapes (Li et al. 2018), taught in Chapter 8.

A trained network is a point w* in weight space. To look at the loss around it we pick one or
two random directions d1, d2 and evaluate L(w* + a d1 + b d2) on a grid of (a, b). Random
Gaussian directions are meaningless on their own, because a ReLU network with batch norm is
invariant to the scale of each filter; Li et al. therefore *filter-normalise* them: every
filter of the direction (one output channel ``d[i]`` of a conv weight, one output row of a
linear weight) is rescaled to the norm of the matching filter ``w[i]`` of the weights.
One-dimensional parameters (biases, BN scales and shifts) get a zero direction by default;
with ``include_1d=True`` they follow Li et al.'s code, which then sets their direction to the
parameter itself (``d = w``, so moving along d rescales them), there being no filters to
normalise. BN running statistics are buffers and never move.

Surfaces are evaluated in eval mode (BN uses its running statistics, so the loss is a
deterministic function of the weights) on a fixed batch that stays on the device. Each result
carries the seeds and options of its directions, so :func:`directions_from_spec` rebuilds them
exactly from the same trained weights.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from skiplib.checks import check_non_negative_ints

Direction = dict[str, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def filter_normalize(direction: torch.Tensor, weight: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Rescale each filter ``direction[i]`` to the norm of ``weight[i]`` (Li et al. 2018, Sec. 4).

    A filter is one output channel of a conv weight ``[out, in, k, k]`` or one output row of a
    linear weight ``[out, in]``. Returns a new tensor; ``weight`` is not changed.
    """
    if direction.shape != weight.shape:
        raise ValueError(f"direction has shape {tuple(direction.shape)} but weight has {tuple(weight.shape)}")
    if weight.dim() < 2:
        raise ValueError(f"filter normalisation needs a weight with >= 2 dims (conv or linear), got shape {tuple(weight.shape)}")
    d = direction.detach().reshape(direction.shape[0], -1)
    w = weight.detach().reshape(weight.shape[0], -1)
    scale = w.norm(dim=1, keepdim=True) / (d.norm(dim=1, keepdim=True) + eps)
    return (d * scale).reshape(direction.shape)


def random_direction(model: nn.Module, seed: int, *, include_1d: bool = False) -> Direction:
    """A filter-normalised Gaussian direction for every parameter of ``model``, keyed by name.

    Drawn on the CPU from ``torch.Generator().manual_seed(seed)`` (the same numbers on any
    device). Parameters with <= 1 dim get zeros, or themselves with ``include_1d`` (Li et al.'s
    choice when biases and BN parameters are not ignored).
    """
    check_non_negative_ints(seed=seed)
    g = torch.Generator().manual_seed(seed)
    out: Direction = {}
    for name, p in model.named_parameters():
        w = p.detach()
        d = torch.randn(w.shape, generator=g, dtype=torch.float32)  # always drawn: same stream either way
        if w.dim() <= 1:
            d = w.clone() if include_1d else torch.zeros_like(w)
        else:
            d = filter_normalize(d.to(w.device, w.dtype), w)
        out[name] = d.to(w.device, w.dtype)
    if not out:
        raise ValueError("the model has no parameters to perturb")
    return out


def direction_spec(seeds: Sequence[int], include_1d: bool = False) -> dict:
    """The JSON-able recipe of a set of directions: enough, with the weights, to rebuild them."""
    return {"seeds": [int(s) for s in seeds], "include_1d": bool(include_1d), "normalisation": "filter"}


def directions_from_spec(model: nn.Module, spec: dict) -> list[Direction]:
    """Rebuild the directions that :func:`direction_spec` describes, for ``model``'s weights."""
    return [random_direction(model, s, include_1d=spec.get("include_1d", False)) for s in spec["seeds"]]


def _default_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.float(), y)


@torch.no_grad()
def batch_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int | None = None,
               loss_fn: LossFn | None = None) -> tuple[float, float]:
    """Mean loss and error rate of ``model`` (as it is: call ``.eval()`` first) on ``x, y``.

    The error rate is NaN when ``y`` does not hold class labels. ``batch_size=None`` runs the
    whole of ``x`` as one batch.
    """
    loss_fn = loss_fn or _default_loss
    n = len(x)
    if n == 0 or len(y) != n:
        raise ValueError(f"need a non-empty batch with as many targets as inputs, got {len(x)} inputs, {len(y)} targets")
    b = batch_size or n
    total, wrong = 0.0, 0
    classify = not torch.is_floating_point(y)
    for i in range(0, n, b):
        out = model(x[i:i + b])
        total += loss_fn(out, y[i:i + b]).item() * len(out)
        if classify:
            wrong += (out.argmax(1) != y[i:i + b]).sum().item()
    return total / n, (wrong / n if classify else float("nan"))


class _Perturbed:
    """Moves ``model``'s parameters to origin + sum_k c_k d_k and back to the origin on exit."""

    def __init__(self, model: nn.Module, directions: Sequence[Direction]) -> None:
        self.params = dict(model.named_parameters())
        for d in directions:
            missing = set(self.params) - set(d)
            if missing:
                raise ValueError(f"the direction lacks parameters {sorted(missing)[:3]}...; build it from this model")
        self.origin = {k: p.detach().clone() for k, p in self.params.items()}
        self.directions = directions

    @torch.no_grad()
    def move(self, coefs: Sequence[float]) -> None:
        for name, p in self.params.items():
            p.copy_(self.origin[name])
            for c, d in zip(coefs, self.directions):
                if c:
                    p.add_(d[name], alpha=float(c))

    def __enter__(self) -> _Perturbed:
        return self

    def __exit__(self, *exc) -> None:
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(self.origin[name])


def _eval_grid(model: nn.Module, x, y, directions, points, batch_size, loss_fn,
               on_point: Callable[[], object] | None = None) -> tuple[np.ndarray, np.ndarray]:
    was_training = model.training
    model.eval()  # BN uses running statistics: the loss is a fixed function of the weights
    losses, errs = [], []
    try:
        with _Perturbed(model, directions) as pert:
            for coefs in points:
                pert.move(coefs)
                loss, err = batch_loss(model, x, y, batch_size=batch_size, loss_fn=loss_fn)
                losses.append(loss)
                errs.append(err)
                if on_point is not None:
                    on_point()
    finally:
        model.train(was_training)
    return np.array(losses), np.array(errs)


def surface_1d(model: nn.Module, x: torch.Tensor, y: torch.Tensor, direction: Direction, alphas: Sequence[float], *,
               batch_size: int | None = None, loss_fn: LossFn | None = None,
               on_point: Callable[[], object] | None = None) -> dict:
    """Loss and error along ``w* + a d`` for each ``a`` in ``alphas``; the model ends unchanged.
    ``on_point`` is called after each point (e.g. a progress bar's ``update``)."""
    alphas = [float(a) for a in alphas]
    loss, err = _eval_grid(model, x, y, [direction], [(a,) for a in alphas], batch_size, loss_fn, on_point)
    return {"alphas": alphas, "loss": loss.tolist(), "err": err.tolist()}


def surface_2d(model: nn.Module, x: torch.Tensor, y: torch.Tensor, d1: Direction, d2: Direction,
               xs: Sequence[float], ys: Sequence[float], *, batch_size: int | None = None,
               loss_fn: LossFn | None = None, on_point: Callable[[], object] | None = None) -> dict:
    """Loss and error on the grid ``w* + a d1 + b d2``; ``loss[j][i]`` is at ``(xs[i], ys[j])``
    (rows follow ``ys``, as ``plt.contour(xs, ys, loss)`` expects). ``on_point`` is called after
    each grid point (e.g. a progress bar's ``update``: a 51x51 surface takes a while)."""
    xs, ys = [float(a) for a in xs], [float(b) for b in ys]
    points = [(a, b) for b in ys for a in xs]
    loss, err = _eval_grid(model, x, y, [d1, d2], points, batch_size, loss_fn, on_point)
    shape = (len(ys), len(xs))
    return {"xs": xs, "ys": ys, "loss": loss.reshape(shape).tolist(), "err": err.reshape(shape).tolist()}


def grid(span: float, points: int) -> list[float]:
    """``points`` evenly spaced coordinates from ``-span`` to ``span`` (odd ``points`` include 0)."""
    if points < 2 or span <= 0:
        raise ValueError(f"need points >= 2 and span > 0, got points={points}, span={span}")
    return np.linspace(-span, span, points).tolist()


@torch.no_grad()
def interpolate(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, y: torch.Tensor, alphas: Sequence[float], *,
                batch_size: int | None = None, loss_fn: LossFn | None = None) -> dict:
    """Loss and error of the network with weights ``(1 - a) w_a + a w_b`` for each ``a`` (1-D
    interpolation between two solutions, Goodfellow et al.'s plot used by Li et al.). Float
    buffers (BN running statistics) are interpolated too; neither model is changed."""
    sa, sb = model_a.state_dict(), model_b.state_dict()
    if sa.keys() != sb.keys() or any(sa[k].shape != sb[k].shape for k in sa):
        raise ValueError("the two models must have the same architecture (same state_dict keys and shapes)")
    work = copy.deepcopy(model_a).eval()
    losses, errs = [], []
    for a in alphas:
        work.load_state_dict({k: torch.lerp(v, sb[k], float(a)) if v.is_floating_point() else v for k, v in sa.items()})
        loss, err = batch_loss(work, x, y, batch_size=batch_size, loss_fn=loss_fn)
        losses.append(loss)
        errs.append(err)
    return {"alphas": [float(a) for a in alphas], "loss": losses, "err": errs}


def roughness(loss: Sequence[Sequence[float]] | np.ndarray) -> dict:
    """Numbers that say how rough a 2-D loss grid is (Chapter 8's comparison):

    * ``range``: max - min of the loss on the grid;
    * ``local_minima``: grid points strictly below all their (up to 8) neighbours;
    * ``curvature``: mean |second difference| along both axes, divided by the loss range
      (scale-free: a bowl of any height scores the same; wiggles score high);
    * ``nonconvex``: fraction of interior second differences that are negative (a convex
      surface has none);
    * ``rises_outward``: fraction of grid points (all but the centre) whose loss is at least that
      of their neighbour one step closer to the centre, where the trained weights sit: 1 for a
      basin whose contours are closed rings around the centre, about 0.5 for noise.
    """
    z = np.asarray(loss, dtype=float)
    if z.ndim != 2 or min(z.shape) < 3:
        raise ValueError(f"need a 2-D grid of at least 3x3, got shape {z.shape}")
    z = np.where(np.isfinite(z), z, np.nanmax(np.where(np.isfinite(z), z, -np.inf)))
    span = float(z.max() - z.min())
    d2x = z[:, 2:] - 2 * z[:, 1:-1] + z[:, :-2]
    d2y = z[2:, :] - 2 * z[1:-1, :] + z[:-2, :]
    second = np.concatenate([d2x.ravel(), d2y.ravel()])
    padded = np.pad(z, 1, constant_values=np.inf)
    h, w = z.shape
    neighbours = [padded[1 + di:1 + di + h, 1 + dj:1 + dj + w] for di in (-1, 0, 1) for dj in (-1, 0, 1) if di or dj]
    minima = int(np.all([z < n for n in neighbours], axis=0).sum())
    rows, cols = np.indices(z.shape)
    ci, cj = h // 2, w // 2
    inward = z[rows - np.sign(rows - ci), cols - np.sign(cols - cj)]  # one step towards the centre
    off_centre = (rows != ci) | (cols != cj)
    return {
        "range": span,
        "local_minima": minima,
        "curvature": float(np.abs(second).mean() / span) if span > 0 else 0.0,
        "nonconvex": float((second < 0).mean()),
        "rises_outward": float((z >= inward)[off_centre].mean()),
    }
