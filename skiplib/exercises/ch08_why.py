"""Chapter 8 (why skips work): the graders of its coding exercises.

:func:`check_normalize_direction`: the chapter's exercise, filter normalisation of a random
  direction for a whole network as Li et al. (2018) do it in their code, against
  :func:`skiplib.analysis.landscape.random_direction`; it names per-layer and per-input-channel
  scaling, biases and BN parameters left random, entries for BN's running statistics, inputs
  changed in place, wrong shapes, and a landscape that still depends on the scale of a filter.
:func:`check_filter_normalize`: the single-tensor step (one weight, one direction) against
  :func:`skiplib.analysis.landscape.filter_normalize`, for those who want it.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from skiplib.analysis.landscape import filter_normalize, random_direction
from skiplib.exercises._runner import _describe_error, run_checks

# ---------------------------------------------------------------------------------------------
# Filter normalisation of one tensor.

_SHAPES = ((8, 3, 3, 3), (10, 16), (4, 6, 1, 1))  # conv 3x3, linear, conv 1x1


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
        if isinstance(out, torch.Tensor):
            return out
        raise TypeError(f"expected a tensor, got {type(out).__name__}")

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
            if not torch.allclose(out, filter_normalize(d, w), rtol=1e-4, atol=1e-6):
                return f"for shape {tuple(w.shape)}: {_hint_filters(out, d, w)}"
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


# ---------------------------------------------------------------------------------------------
# The chapter's exercise: normalise a random direction for a whole network, as Li et al.'s code
# does (their ``normalize_directions_for_weights`` with ``ignore='biasbn'``, or ``ignore=''``
# for ``include_1d=True``), and as :func:`skiplib.analysis.landscape.random_direction` does.

class _Hint(Exception):
    """A grader's own finding, raised deep in a helper and returned by the check as its message."""


def _hinted(check: Callable[[], str | None]) -> Callable[[], str | None]:
    def run() -> str | None:
        try:
            return check()
        except _Hint as h:
            return str(h)

    return run


class _GradedNet(nn.Module):
    """Every kind of tensor the rule must tell apart: conv weights with and without a bias, BN
    scales and shifts (plus their running statistics and batch counter, which are buffers), a
    linear layer and, with ``scalar``, a 0-dim parameter (a ReZero-style α, Chapter 7)."""

    def __init__(self, scalar: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 1)  # with a bias
        self.bn2 = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 5)
        self.alpha = nn.Parameter(torch.tensor(0.7)) if scalar else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        branch = F.relu(self.bn2(self.conv2(out)))
        out = out + (branch if self.alpha is None else self.alpha * branch)
        return self.fc(out.mean(dim=(2, 3)))


@torch.no_grad()
def _graded_net(seed: int, *, scalar: bool = False) -> _GradedNet:
    """The net with random weights whose filters have different norms (so that per-filter,
    per-layer and per-input-channel scalings differ) and random BN statistics, in eval mode."""
    g = torch.Generator().manual_seed(seed)
    net = _GradedNet(scalar)
    for name, t in net.state_dict().items():
        if name.endswith("num_batches_tracked"):
            t.fill_(7)
        elif name.endswith("running_var"):
            t.copy_(torch.rand(t.shape, generator=g) + 0.5)
        elif t.dim() >= 2:
            scale = 0.2 + 2 * torch.rand(t.shape[0], *[1] * (t.dim() - 1), generator=g)
            t.copy_(torch.randn(t.shape, generator=g) * scale)
        else:
            t.copy_(torch.randn(t.shape, generator=g) * 0.3 + (1.0 if name.endswith("bn1.weight") else 0.0))
    return net.eval()


def _gaussian(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The raw draw of :func:`~skiplib.analysis.landscape.random_direction` (same generator, same
    order), before its normalisation: what the learner's function receives."""
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(p.shape, generator=g, dtype=torch.float32) for name, p in model.named_parameters()}


def _hint_filters(got: torch.Tensor, d: torch.Tensor, w: torch.Tensor, include_1d: bool = False) -> str:
    """Which typical mistake turns the raw direction ``d`` of a conv or linear weight ``w`` into ``got``
    (``include_1d`` changes nothing for them)."""
    vn = torch.linalg.vector_norm
    across = tuple(i for i in range(d.dim()) if i != 1)  # everything but the input channel
    flat = d.flatten(1)
    for wrong, hint in (
        (d * w.norm() / d.norm(), "you scaled the whole tensor to the weight's norm (layer-wise normalisation); "
                                  "scale each filter d[i] to the norm of w[i] separately"),
        (d * vn(w, dim=across, keepdim=True) / vn(d, dim=across, keepdim=True),
         "you normalised per *input* channel (dim 1); a filter is one output channel w[i] (dim 0), "
         "all its input channels and taps together"),
        ((flat / flat.norm(dim=1, keepdim=True)).reshape(d.shape),
         "each filter has norm 1: multiply it by the norm of the matching weight filter w[i]"),
        (d, "this is the random draw as it came in: its filters still need rescaling to the weight filters' norms"),
        (w, "you returned the weights themselves: the random direction is lost"),
        (torch.zeros_like(d), "a conv or linear weight got a zero direction: only parameters with fewer than "
                              "2 dims (biases, BN scales and shifts, scalars) are left out"),
    ):
        if torch.allclose(got, wrong, rtol=1e-4, atol=1e-6):
            return hint
    got_n, w_n = got.flatten(1).norm(dim=1), w.flatten(1).norm(dim=1)
    if not torch.allclose(got_n, w_n, rtol=1e-4):
        return f"filter norms {got_n[:3].tolist()} ... should be those of the weight's filters {w_n[:3].tolist()} ..."
    return "the filter norms are right but the filters no longer point along the random draw"


def _hint_1d(got: torch.Tensor, d: torch.Tensor, w: torch.Tensor, include_1d: bool) -> str:
    """Which typical mistake gives ``got`` for a parameter with fewer than 2 dims."""
    want = ("its direction is the parameter itself, d = w (a copy), as in Li et al.'s code when biases and BN "
            "parameters are not ignored" if include_1d else
            "its direction is zero: Li et al. ignore biases and BN parameters (their ignore='biasbn')")
    for wrong, what in (
        (d, "it kept its random values"),
        (w, "it is the parameter itself (d = w, Li et al.'s choice only with include_1d=True)"),
        (torch.zeros_like(d), "it is zero (the default; with include_1d=True it is d = w)"),
        (d.sign() * w.abs(), "you filter-normalised it, so each entry counted as a filter (d_i -> ±|w_i|); "
                             "a bias or BN parameter has no filters"),
        (d * w.norm() / d.norm(), "you normalised it as a whole, like a layer"),
    ):
        if torch.allclose(got, wrong, rtol=1e-4, atol=1e-6):
            return f"{what}; {want}"
    return f"its entries are {got.flatten()[:3].tolist()} ...; {want}"


@torch.no_grad()
def _moved(model: nn.Module, direction: dict[str, torch.Tensor], alpha: float) -> nn.Module:
    moved = copy.deepcopy(model)
    for name, p in moved.named_parameters():
        p.add_(direction[name], alpha=alpha)
    return moved


def check_normalize_direction(fn: Callable[..., dict[str, torch.Tensor]], *, verbose: bool = True) -> bool:
    """Chapter 8 exercise: ``fn(direction, model, include_1d=False)`` gets a raw Gaussian direction
    (a dict: one tensor per parameter of ``model``, named as in ``model.named_parameters()``) and
    returns a new dict, the direction of
    :func:`skiplib.analysis.landscape.random_direction`: each filter of a conv or linear weight
    rescaled to the norm of the matching weight filter; every parameter with fewer than 2 dims
    (biases, BN scales and shifts, scalars) zero, or a copy of itself with ``include_1d=True``;
    no entries for buffers; model and direction left unchanged. Prints what is right and what is
    not; returns True if all is."""

    def call(model: nn.Module, raw: dict, **kw) -> dict:
        buffers = {n for n, _ in model.named_buffers()}
        try:
            out = fn(raw, model, **kw)
        except KeyError as e:
            if e.args and e.args[0] in buffers:
                raise _Hint(f"your code looked up {e.args[0]!r} in the direction: that is one of BN's running "
                            "statistics, a buffer of model.state_dict(), not a parameter; loop over "
                            "model.named_parameters(): the statistics are not perturbed") from None
            raise
        if not isinstance(out, dict):
            raise _Hint(f"expected a dict parameter name -> tensor, got a {type(out).__name__}")
        return out

    def entries(model: nn.Module, out: dict) -> str | None:
        params = dict(model.named_parameters())
        buffers = [k for k in out if k in dict(model.named_buffers())]
        if buffers:
            return (f"the direction has entries for {buffers}: BN's running statistics and batch counter are "
                    "buffers (model.state_dict() holds them, model.named_parameters() does not); a direction "
                    "perturbs parameters only, the statistics must not move")
        extra = [k for k in out if k not in params]
        if extra:
            return f"unexpected entries {extra}: one entry per parameter, named as in model.named_parameters()"
        missing = [k for k in params if k not in out]
        if missing:
            return (f"no entry for {missing}: every parameter needs one (a zero tensor for biases and BN "
                    "parameters), or moving the weights along the direction fails on them")
        for k, p in params.items():
            if not isinstance(out[k], torch.Tensor):
                return f"the entry for {k!r} is a {type(out[k]).__name__}, not a tensor"
            if out[k].shape != p.shape:
                return (f"the entry for {k!r} has shape {tuple(out[k].shape)}, its parameter {tuple(p.shape)}: "
                        "give every entry its parameter's shape (reshape back after flattening the filters)")
        return None

    def graded(seed: int, include_1d: bool, scalar: bool = False):
        """(model, raw draw, learner's direction, library's direction), the learner's checked for entries."""
        model = _graded_net(seed, scalar=scalar)
        raw = _gaussian(model, seed + 1)
        try:
            out = call(model, {k: v.clone() for k, v in raw.items()}, **({"include_1d": True} if include_1d else {}))
            problem = entries(model, out)
        except _Hint as h:
            problem = str(h)
        if problem:  # said in full by the first check, unless only the net with a scalar shows it
            raise _Hint(problem if scalar else "skipped until the first check passes")
        return model, raw, out, random_direction(model, seed + 1, include_1d=include_1d)

    def first_entries() -> str | None:
        return entries(model := _graded_net(0), call(model, _gaussian(model, 1)))

    def compare(include_1d: bool, multi_dim: bool) -> str | None:
        for seed in (0, 10):
            model, raw, out, want = graded(seed, include_1d)
            for k, p in model.named_parameters():
                if (p.dim() >= 2) != multi_dim or torch.allclose(out[k], want[k], rtol=1e-4, atol=1e-6):
                    continue
                hint = (_hint_filters if multi_dim else _hint_1d)(out[k], raw[k], p.detach(), include_1d)
                return f"{k!r}: {hint}"
        return None

    def takes_include_1d() -> bool:
        try:
            return inspect.signature(fn).bind({}, None, include_1d=True) is not None
        except (TypeError, ValueError):
            return False

    def include_1d() -> str | None:
        if not takes_include_1d():
            return "your function must take a keyword argument include_1d (default False)"
        return compare(True, False)  # the weights' rule is graded above

    def scalar() -> str | None:
        try:
            _, _, out, want = graded(0, False, scalar=True)
        except (NotImplementedError, _Hint):
            raise
        except Exception as e:  # the usual cause: a 0-dim tensor has no len() and no dim 1 to flatten
            return (f"on a 0-dim parameter (a scalar like ReZero's α of Chapter 7) {_describe_error(e)}; a scalar has "
                    "no filters either: treat every parameter with fewer than 2 dims (w.dim() <= 1) like a bias")
        if not torch.equal(out["alpha"], want["alpha"]):
            return f"the scalar 'alpha' got {out['alpha'].tolist()}: like a bias, its direction is zero"
        return None

    def untouched() -> str | None:
        model, raw = _graded_net(0), _gaussian(_graded_net(0), 1)
        state, given = {k: v.clone() for k, v in model.state_dict().items()}, {k: v.clone() for k, v in raw.items()}
        call(model, given)
        changed = [k for k, v in model.state_dict().items() if not torch.equal(v, state[k])]
        if weights := [k for k in changed if k in dict(model.named_parameters())]:
            return (f"your function changed the weights {weights} in place: it must only "
                    "read them (compute with p.detach(); never p.data.mul_ or p.copy_)")
        if changed:
            return (f"your function changed the buffers {changed} (BN's running statistics): did it run the model "
                    "in training mode? Nothing but the direction's own tensors may be written")
        if moved := [k for k in raw if not torch.equal(given[k], raw[k])]:
            return (f"your function changed the direction it was given ({moved[:2]} ...) in place: return new "
                    "tensors (e.g. d * scale, torch.zeros_like(d)), so that the caller can reuse the raw draw")
        return None

    def plain_data() -> str | None:
        for include in (False, True) if takes_include_1d() else (False,):
            model, _, out, _ = graded(0, include)
            for k, p in model.named_parameters():
                if out[k].requires_grad:
                    return (f"the entry for {k!r} is attached to the autograd graph (requires_grad=True): compute "
                            "it from p.detach(); a direction is data, not a function of the weights")
                if out[k].untyped_storage().data_ptr() == p.untyped_storage().data_ptr():
                    return (f"with include_1d={include} the entry for {k!r} shares memory with the parameter: moving "
                            "the weights in place would move the direction too; return p.detach().clone()")
        return None

    def invariant() -> str | None:
        model, _, out, _ = graded(0, False)
        twin = copy.deepcopy(model)  # filter 2 of conv1 ten times larger, its BN statistics to match
        with torch.no_grad():
            twin.conv1.weight[2] *= 10.0
            twin.bn1.running_mean[2] *= 10.0
            twin.bn1.running_var[2] *= 100.0
        out_twin = call(twin, _gaussian(twin, 1))
        x = torch.randn(6, 3, 6, 6, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            for a in (-1.0, -0.5, 0.5, 1.0):
                y, y_twin = _moved(model, out, a)(x), _moved(twin, out_twin, a)(x)
                if not torch.allclose(y, y_twin, rtol=1e-3, atol=1e-4):
                    return (f"the net and its twin (filter 2 of conv1 ×10, its BN statistics rescaled) compute the "
                            f"same function, but at α = {a:+g} along your directions their outputs differ by up to "
                            f"{(y - y_twin).abs().max().item():.3g}: the landscape depends on an arbitrary filter scale, "
                            "which is what filter normalisation removes")
        return None

    return run_checks("Filter-normalised direction for a whole network", [
        ("one entry per parameter (none for buffers), in its parameter's shape", _hinted(first_entries)),
        ("conv and linear weights: each filter rescaled to its weight filter's norm", _hinted(lambda: compare(False, True))),
        ("biases and BN scales and shifts get a zero direction", _hinted(lambda: compare(False, False))),
        ("with include_1d=True they get a copy of themselves (Li et al.'s ignore='')", _hinted(include_1d)),
        ("a 0-dim parameter (a scalar) is treated like a bias", _hinted(scalar)),
        ("the model (weights, BN statistics) and the given direction are left unchanged", _hinted(untouched)),
        ("the result is new data: detached, not sharing memory with the weights", _hinted(plain_data)),
        ("the same landscape for two parametrisations of one function", _hinted(invariant)),
    ], verbose=verbose)
