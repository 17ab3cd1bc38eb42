"""Checks for Chapter 2's coding exercises: the Dirac (identity) initialisation of a conv layer,
and Fixup's rescaling of a stack of residual branches.

``check_dirac_init(fn)`` tries the learner's ``fn`` on several conv layers, ``check_fixup_init(fn)``
on several stacks of :class:`~skiplib.analysis.variance.NormFreeBlock`; each prints what is right
and what is not, and returns True/False. Neither raises on a learner's mistake.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn

from skiplib.analysis.variance import NormFreeBlock
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


# (blocks L, width, whether the first block halves the resolution and doubles the width):
# different L catch a hard-coded depth, the downsampling block a code that assumes one width
_FIXUP_CASES: tuple[tuple[int, int, bool], ...] = ((3, 4, False), (9, 3, False), (16, 4, True), (50, 2, False))


def _fixup_stack(depth: int, width: int, down: bool) -> nn.Sequential:
    torch.manual_seed(1000 + depth)
    first = NormFreeBlock(width, 2 * width, 2) if down else NormFreeBlock(width, width)
    rest = [NormFreeBlock(first.conv2.out_channels, first.conv2.out_channels) for _ in range(depth - 1)]
    return nn.Sequential(first, *rest)


def _conv1_problem(w: torch.Tensor, w0: torch.Tensor, depth: int) -> str | None:
    """None if conv1 is the He weights times L^(-1/2), else why not."""
    want = depth ** -0.5
    r = float((w * w0).sum() / (w0 * w0).sum())  # the factor, if w is a multiple of w0
    if not torch.allclose(w, r * w0, rtol=1e-4, atol=1e-7):
        return ("conv1 is not the given weights times one factor: rescale the existing He weights "
                "(conv1.weight.mul_(...)) rather than drawing new ones")
    if math.isclose(r, want, rel_tol=1e-4):
        return None
    named = {1.0: "conv1 is unchanged: multiply it by L^(-1/2)",
             0.0: ("conv1 is zero: with both convs of a branch at zero neither gets a gradient (each one's "
                   "gradient is multiplied by the other), so the branch would never train; scale conv1 by L^(-1/2) instead"),
             1 / depth: "conv1 was scaled by 1/L: Fixup's factor is L^(-1/(2m-2)), and with m = 2 convs that is L^(-1/2)",
             depth ** -0.25: "conv1 was scaled by L^(-1/4): with m = 2 convs per branch the exponent is -1/(2m-2) = -1/2",
             (2 * depth) ** -0.5: "conv1 was scaled by (2L)^(-1/2): L counts residual branches (blocks), not conv layers",
             depth ** 0.5: "conv1 was multiplied by sqrt(L): divide by it instead"}
    for value, message in named.items():
        if math.isclose(r, value, rel_tol=1e-4, abs_tol=1e-9):
            return message
    return (f"conv1 was scaled by {r:.4g}, expected L^(-1/2) = {want:.4g} for L = {depth} blocks: "
            "read L from len(blocks) rather than fixing it")


def _try_fixup(fn: Callable[[nn.Sequential], object], depth: int, width: int, down: bool) -> str | None:
    """One hidden test: None if ``fn`` applies Fixup's rule to this stack, else what is wrong."""
    stack = _fixup_stack(depth, width, down)
    before = [(b.conv1.weight.detach().clone(), b.conv2.weight.detach().clone()) for b in stack]
    try:
        returned = fn(stack)
    except Exception as e:  # a learner's bug: report it with a hint, never raise
        hint = "; wrap the in-place changes in `with torch.no_grad():`" if "leaf" in str(e) else ""
        return f"your function raised {type(e).__name__}: {e}{hint}"
    blocks = list(stack)
    if isinstance(returned, (nn.Sequential, list, tuple)) and len(returned) == depth \
            and all(isinstance(b, NormFreeBlock) for b in returned):
        blocks = list(returned)  # a returned stack counts; otherwise the blocks were changed in place
    found = []
    for name in ("conv1", "conv2"):
        w = getattr(blocks[0], name).weight
        if not isinstance(w, nn.Parameter) or not w.requires_grad:
            return f"{name}.weight must stay a trainable nn.Parameter (requires_grad=True): change it in place"
    for i, (b, (w1, w2)) in enumerate(zip(blocks, before)):
        if b.conv1.weight.shape != w1.shape or b.conv2.weight.shape != w2.shape:
            return f"block {i}: a weight changed shape; only its values should change"
        problem = _conv1_problem(b.conv1.weight.detach(), w1, depth)
        if problem and problem not in found:
            found.append(f"block {i}: {problem}" if i else problem)
        w = b.conv2.weight.detach()
        if w.abs().max() > 0:
            if torch.allclose(w, w2 * depth ** -0.5, rtol=1e-4):
                msg = "conv2 was rescaled too: Fixup sets the last layer of every branch to zero"
            else:
                msg = "conv2 must be zero: Fixup starts the last layer of every branch at 0"
            if msg not in found:
                found.append(msg)
        if b.scale.item() != 1 or any(getattr(b, n).item() != 0 for n in ("bias1a", "bias1b", "bias2a", "bias2b")):
            msg = ("the scalar multiplier must stay 1 and the scalar biases 0 (a multiplier of 0 would be "
                   "SkipInit, not Fixup)")
            if msg not in found:
                found.append(msg)
        if len(found) >= 3:
            break
    return "; ".join(found) or None


def check_fixup_init(fn: Callable[[nn.Sequential], object], *, verbose: bool = True) -> bool:
    """Grade ``fn(blocks)``, Fixup's rule for an ``nn.Sequential`` of L He-initialised
    :class:`~skiplib.analysis.variance.NormFreeBlock`: every conv1 times L^(-1/2), every conv2 zero.

    ``fn`` may change the blocks in place or return the stack. Prints a line per hidden stack and
    returns True when every one is right.
    """
    if not callable(fn):
        if verbose:
            print(f"Fixup initialisation: expected a function taking a stack of blocks, got {type(fn).__name__}")
        return False
    checks = [
        (f"{d} blocks of width {w}" + (" (the first one downsampling)" if down else ""),
         lambda d=d, w=w, down=down: _try_fixup(fn, d, w, down))
        for d, w, down in _FIXUP_CASES
    ]
    return run_checks("Fixup initialisation", checks, verbose=verbose)
