"""Check for Chapter 2's coding exercise: the Dirac (identity) initialisation of a conv layer.

``check_dirac_init(fn)`` tries the learner's ``fn`` on several conv layers, prints what is
right and what is not, and returns True/False. It never raises on a learner's mistake.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from skiplib.exercises._runner import run_checks

# (channels, kernel, bias): a 3x3 answer hard-coded for one shape should fail the others
_CASES: tuple[tuple[int, int, bool], ...] = ((3, 3, False), (8, 3, True), (4, 5, True), (6, 1, False))


def _diagnose(conv: nn.Conv2d, before: torch.Tensor) -> str:
    """Why ``conv`` is not an identity map, in words a learner can act on (all problems found)."""
    w = conv.weight.detach()
    if w.shape == before.shape and torch.equal(w, before):
        return ("the weights are unchanged: modify conv.weight in place (inside torch.no_grad()) "
                "or return a new conv layer")
    k0, k1 = conv.kernel_size
    c0, c1 = k0 // 2, k1 // 2
    found = []
    if conv.bias is not None and conv.bias.detach().abs().max() > 0:
        found.append("the bias is not zero, so the layer computes x + bias: set conv.bias to zero as well")
    rest = w.clone()
    rest[:, :, c0, c1] = 0
    if rest.abs().max() > 0:
        pos = sorted((int(i), int(j)) for i, j in (rest.abs().sum((0, 1)) > 0).nonzero().tolist())
        found.append(f"kernel position(s) {pos} are non-zero, so the output is a shifted or blurred input: "
                     f"for a {k0}x{k1} kernel the only non-zero entries must sit at the centre ({c0}, {c1}), "
                     "i.e. kernel_size // 2 (read it from conv.kernel_size rather than assuming 3x3)")
    centre = w[:, :, c0, c1]
    if (centre - torch.diag(torch.diagonal(centre))).abs().max() > 0:
        found.append("weight[o, i] is non-zero for some o != i, so output channel o mixes in other input "
                     "channels: only weight[c, c] (at the centre) may be non-zero")
    diag = torch.diagonal(centre)
    misplaced = rest.abs().max() > 0 and not diag.any()  # the 1s sit elsewhere: said above
    if not torch.all(diag == 1) and not misplaced:
        if torch.allclose(diag, diag[0].expand_as(diag)):
            found.append(f"the centre weights are {diag[0].item():.3g}, which scales the output: "
                         "the scale must be exactly 1")
        else:
            found.append("the centre weights weight[c, c, centre] must all be exactly 1")
    return "; ".join(found) or "conv(x) differs from x"


def _try_case(fn: Callable[[nn.Conv2d], object], channels: int, k: int, bias: bool) -> str | None:
    """One hidden test: None if ``fn`` turns this conv into an identity map, else what is wrong."""
    torch.manual_seed(channels * 10 + k)
    conv = nn.Conv2d(channels, channels, k, padding=k // 2, bias=bias)
    before = conv.weight.detach().clone()
    try:
        returned = fn(conv)
    except Exception as e:  # a learner's bug: report it with a hint, never raise
        hint = ""
        if isinstance(e, RuntimeError) and "leaf" in str(e):
            hint = "; wrap the in-place changes in `with torch.no_grad():`"
        elif isinstance(e, TypeError) and "parameter" in str(e):
            hint = ("; assign into the existing parameter (conv.weight.copy_(...) or conv.weight[...] = ...) "
                    "inside torch.no_grad(), or wrap a new tensor in nn.Parameter")
        elif isinstance(e, IndexError):
            hint = "; does your code assume a 3x3 kernel? Read the size from conv.kernel_size"
        return f"your function raised {type(e).__name__}: {e}{hint}"
    layer = returned if isinstance(returned, nn.Conv2d) else conv  # in place (returns None) or a new layer
    if not isinstance(layer.weight, nn.Parameter) or not layer.weight.requires_grad:
        return "conv.weight must stay a trainable nn.Parameter (requires_grad=True)"
    if layer.weight.shape != before.shape:
        return f"the weight shape changed from {tuple(before.shape)} to {tuple(layer.weight.shape)}"
    x = torch.randn(2, channels, 7, 7, generator=torch.Generator().manual_seed(k))
    try:
        with torch.no_grad():
            y = copy.deepcopy(layer)(x)
    except Exception as e:
        return f"the layer no longer runs ({type(e).__name__}: {e})"
    if y.shape == x.shape and torch.allclose(y, x, atol=1e-6):
        return None
    return _diagnose(layer, before)


def check_dirac_init(fn: Callable[[nn.Conv2d], object], *, verbose: bool = True) -> bool:
    """Grade ``fn(conv)``, which should make a square, stride-1, 'same'-padded conv the identity map.

    ``fn`` may change ``conv`` in place (returning None) or return a new conv layer. Prints a
    line per hidden test and returns True when every layer computes conv(x) == x.
    """

    if not callable(fn):
        if verbose:
            print(f"Dirac initialisation: expected a function taking a conv layer, got {type(fn).__name__}")
        return False
    checks = [
        (f"Conv2d({c}, {c}, kernel_size={k}, padding={k // 2}, bias={b}) becomes the identity",
         lambda c=c, k=k, b=b: _try_case(fn, c, k, b))
        for c, k, b in _CASES
    ]
    return run_checks("Dirac initialisation", checks, verbose=verbose)
