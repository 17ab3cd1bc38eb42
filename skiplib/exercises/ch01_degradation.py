"""Chapter 1's graders: the option-A (zero-padding) shortcut.

:func:`check_option_a_shortcut`: the chapter's exercise, the whole shortcut module for any stride and
  any channel increase, against :class:`skiplib.blocks.PadShortcut`; it names padding the wrong
  dimension or the wrong end, pooling instead of subsampling, sizes rounded down for odd inputs, a
  fixed stride, parameters or buffers, a missing or vague error for a channel decrease, a changed dtype.
:func:`check_pad_shortcut`: the two-line function ``pad_shortcut(x, out_channels, stride)`` alone.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from skiplib.exercises._runner import run_checks


class _Wrong(Exception):
    """A grader's own finding about what the learner's code gave back, reported as its message."""


def _reference_pad_shortcut(x: torch.Tensor, out_channels: int, stride: int) -> torch.Tensor:
    from skiplib.blocks import PadShortcut

    return PadShortcut(x.shape[1], out_channels, stride)(x)


def check_pad_shortcut(fn: Callable[[torch.Tensor, int, int], torch.Tensor], *, verbose: bool = True) -> bool:
    """Chapter 1 exercise: ``fn(x, out_channels, stride)`` must implement option A, the
    parameter-free shortcut that subsamples by ``stride`` and appends zero channels."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 8, 8, generator=g)

    def shape_check() -> str | None:
        out = fn(x, 32, 2)
        if not isinstance(out, torch.Tensor):
            return f"expected a tensor, got {type(out).__name__}"
        if tuple(out.shape) != (2, 32, 4, 4):
            return ("for x of shape (2, 16, 8, 8), 32 channels, stride 2 the output should be (2, 32, 4, 4), "
                    f"got {tuple(out.shape)}")
        return None

    def same_shape_is_identity() -> str | None:
        out = fn(x, 16, 1)
        if not torch.equal(out, x):
            return "with stride 1 and the same channel count the shortcut must return x unchanged"
        return None

    def old_channels_carried() -> str | None:
        out = fn(x, 32, 2)
        if not torch.equal(out[:, :16], x[:, :, ::2, ::2]):
            return ("the first 16 channels should be x subsampled with stride 2, i.e. x[:, :, ::2, ::2]; "
                    "hint: keep every second row and column, starting at 0")
        return None

    def new_channels_zero() -> str | None:
        out = fn(x, 32, 2)
        if out[:, 16:].abs().sum() != 0:
            return "the 16 new channels must be all zeros (option A adds no parameters); hint: torch.nn.functional.pad"
        return None

    def matches_reference() -> str | None:
        y = torch.randn(3, 8, 6, 6, generator=g)
        out = fn(y, 24, 2)
        if out.shape != (3, 24, 3, 3) or not torch.equal(out, _reference_pad_shortcut(y, 24, 2)):
            return "does not match skiplib's PadShortcut for 8 -> 24 channels, stride 2"
        return None

    def differentiable() -> str | None:
        y = x.clone().requires_grad_(True)
        fn(y, 32, 2).sum().backward()
        expected = torch.zeros_like(x)
        expected[:, :, ::2, ::2] = 1
        if y.grad is None or not torch.equal(y.grad, expected):
            return "gradients should flow to exactly the subsampled positions (did you detach or copy with numpy?)"
        return None

    return run_checks("Option-A shortcut", [
        ("output shape", shape_check),
        ("identity when nothing changes", same_shape_is_identity),
        ("old channels carried through", old_channels_carried),
        ("new channels are zero", new_channels_zero),
        ("same as skiplib.blocks.PadShortcut", matches_reference),
        ("gradient flows through the shortcut", differentiable),
    ], verbose=verbose)



# ---------------------------------------------------------------------------------------------
# The chapter's exercise: the whole option-A shortcut module, for any stride and channel increase.

# (in_channels, out_channels, stride, height, width): identity, the ResNet stage change, odd and
# non-square sizes, a tripled width, stride 3, a channel increase without subsampling, and a
# subsampling without a channel increase
_CASES = ((16, 16, 1, 8, 8), (16, 32, 2, 8, 8), (16, 32, 2, 7, 7), (8, 24, 2, 5, 9),
          (4, 10, 3, 10, 7), (6, 9, 1, 5, 5), (5, 5, 2, 6, 6))


def _out_size(n: int, stride: int) -> int:
    """Output size of the block's strided 3x3 conv (padding 1), which the shortcut must match: ceil(n / stride)."""
    return (n - 1) // stride + 1


def _shape_hint(got: tuple, x: torch.Tensor, cout: int, stride: int) -> str:
    n, cin, h, w = x.shape
    want = (n, cout, _out_size(h, stride), _out_size(w, stride))
    extra = cout - cin
    base = f"for x of shape {tuple(x.shape)}, {cin} -> {cout} channels, stride {stride}: expected {want}, got {got}"
    if len(got) != 4:
        return base
    if got[1] == cin and extra and (got[3] == want[3] + extra or got[2] == want[2] + extra):
        return (f"{base}; you padded the {'width' if got[3] == want[3] + extra else 'height'} instead of the channels: "
                "F.pad's tuple runs from the last dimension backwards, (W_left, W_right, H_top, H_bottom, C_front, C_back)")
    if extra and got[0] == n + extra and got[1] == cin:
        return f"{base}; you padded the batch dimension: the zeros go on dim 1, the channels"
    if got[1] == 2 * cin != cout:
        return f"{base}; the channels were doubled: append out_channels - in_channels zero channels"
    if got[2:] == (h // stride, w // stride) and got[2:] != want[2:]:
        return (f"{base}; for an odd size the output must have ceil(H / stride) rows and columns, like the block's "
                "strided 3x3 convolution (padding 1), or the sum with the residual branch fails; pooling and view "
                "tricks round down, x[:, :, ::stride, ::stride] does not")
    if got[2:] == (len(range(1, h, stride)), len(range(1, w, stride))):
        return f"{base}; the subsampling starts at row and column 1: start at 0, x[:, :, ::stride, ::stride]"
    if got[2:] == (h, w) and stride > 1:
        return f"{base}; x was not subsampled: keep one row and one column in {stride}, x[:, :, ::stride, ::stride]"
    if got[2:] == (_out_size(h, 2), _out_size(w, 2)) and stride != 2:
        return f"{base}; the stride is fixed at 2: use the stride the module was built with"
    return base


def _value_hint(got: torch.Tensor, x: torch.Tensor, cout: int, stride: int) -> str | None:
    """Which typical mistake gives ``got`` (of the right shape)."""
    extra = cout - x.shape[1]
    sub = x[:, :, ::stride, ::stride]
    variants = [
        (F.pad(sub, (0, 0, 0, 0, extra, 0)), "the zero channels are in front: skiplib appends them after the old "
                                             "ones, so channels 0 ... in_channels - 1 carry x"),
        (F.pad(sub, (0, 0, 0, 0, extra // 2, extra - extra // 2)),
         "the zero channels are split between both ends, as some reimplementations do (planes // 4 on each "
         "side); skiplib appends them all after the old channels"),
        (torch.cat([sub, sub], 1)[:, :cout] if extra <= x.shape[1] else sub,
         "the new channels are copies of x: option A fills them with zeros"),
    ]
    if stride > 1:
        for name, pool in (("averaged", F.avg_pool2d), ("max-pooled", F.max_pool2d)):
            pooled = pool(x, stride, ceil_mode=True)
            variants.append((F.pad(pooled, (0, 0, 0, 0, 0, extra)),
                             f"you {name} {stride}x{stride} windows: option A subsamples, keeping the pixel at the "
                             "top left of each window, x[:, :, ::stride, ::stride]"))
        variants.append((F.pad(x[:, :, 1::stride, 1::stride], (0, 0, 0, 0, 0, extra)),
                         "the subsampling starts at row and column 1: start at 0, x[:, :, ::stride, ::stride]"))
    for wrong, hint in variants:
        if wrong.shape == got.shape and torch.equal(got, wrong):
            return hint
    if not torch.equal(got[:, x.shape[1]:], torch.zeros_like(got[:, x.shape[1]:])):
        return "the new channels must be all zeros (option A has no parameters to fill them with)"
    if not torch.equal(got[:, :x.shape[1]], sub):
        return "the old channels must be x subsampled, x[:, :, ::stride, ::stride], unchanged"
    return None


def check_option_a_shortcut(cls, *, verbose: bool = True) -> bool:
    """Chapter 1 exercise: ``cls(in_channels, out_channels, stride)`` must build option A, equal to
    :class:`skiplib.blocks.PadShortcut` for any stride and channel increase: ``forward(x)`` keeps
    every ``stride``-th row and column (from 0, so odd sizes give ``ceil(H / stride)``) and appends
    ``out_channels - in_channels`` zero channels after the old ones; no parameters or buffers; a
    ``ValueError`` naming both counts when ``out_channels < in_channels``. Prints what is right and
    what is not; returns True if all is."""
    from skiplib.blocks import PadShortcut

    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(2, cin, h, w, generator=g) for cin, _, _, h, w in _CASES]

    def make(cin: int, cout: int, stride: int) -> nn.Module:
        module = cls(cin, cout, stride)
        if not isinstance(module, nn.Module):
            raise _Wrong(f"{getattr(cls, '__name__', cls)}(...) returned a {type(module).__name__}, not an nn.Module")
        return module

    def run(case: tuple, x: torch.Tensor) -> torch.Tensor:
        out = make(*case[:3])(x)
        if not isinstance(out, torch.Tensor):
            raise _Wrong(f"forward returned a {type(out).__name__}, not a tensor")
        return out

    def hinted(check):
        def wrapped() -> str | None:
            try:
                return check()
            except _Wrong as w:
                return str(w)
        return wrapped

    def parameter_free() -> str | None:
        for cin, cout, stride, _, _ in _CASES:
            module = make(cin, cout, stride)
            params = [n for n, _ in module.named_parameters()]
            if params:
                return (f"the module has parameters {params}: option A's shortcut has none (that is its point: "
                        "a ResNet with it has exactly the parameters of its plain net)")
            if module.state_dict():
                return (f"the module stores buffers {list(module.state_dict())}: option A stores nothing; make the "
                        "zeros in forward, with the shape and dtype of x")
        return None

    def refuses_decrease() -> str | None:
        for cin, cout, stride in ((32, 16, 1), (24, 8, 2)):
            try:
                make(cin, cout, stride)
            except ValueError as e:
                if str(cin) not in str(e) or str(cout) not in str(e):
                    return f"the ValueError should say which channel counts were asked for ({cin} -> {cout}); it says: {e}"
                continue
            except NotImplementedError:
                raise
            except Exception as e:  # another exception type is the finding itself
                return f"{cin} -> {cout} channels should raise a ValueError (a bad argument), not {type(e).__name__}: {e}"
            return (f"{getattr(cls, '__name__', 'the class')}({cin}, {cout}, {stride}) built a module: zero-padding can "
                    "only add channels; raise a ValueError in __init__ that names both counts")
        return None

    def shapes() -> str | None:
        for case, x in zip(_CASES, inputs):
            cin, cout, stride, h, w = case
            got = tuple(run(case, x).shape)
            if got != (x.shape[0], cout, _out_size(h, stride), _out_size(w, stride)):
                return _shape_hint(got, x, cout, stride)
        return None

    def equal() -> str | None:
        wrong_shape = False
        for case, x in zip(_CASES, inputs):
            cin, cout, stride = case[:3]
            got, want = run(case, x), PadShortcut(cin, cout, stride)(x)
            wrong_shape |= got.shape != want.shape  # reported above; the other cases still say what is wrong
            if got.shape == want.shape and not torch.equal(got, want):
                hint = _value_hint(got, x, cout, stride) or "it differs from PadShortcut"
                return f"{cin} -> {cout} channels, stride {stride}, {tuple(x.shape[2:])} input: {hint}"
        return "equal where the shapes are right, which they are not everywhere (see above)" if wrong_shape else None

    def dtype() -> str | None:
        for dt in (torch.float64, torch.bfloat16):
            x = inputs[1].to(dt)
            got = run(_CASES[1], x)
            if got.dtype != dt:
                return (f"for a {dt} input the output is {got.dtype}: make the zeros like x (F.pad, or "
                        "x.new_zeros(...)); on a GPU the device must match in the same way")
        return None

    def gradient() -> str | None:
        case = _CASES[2]  # 16 -> 32 channels, stride 2, 7x7
        x = inputs[2].clone().requires_grad_(True)
        out = run(case, x)
        if tuple(out.shape) != (2, case[1], 4, 4):
            return "skipped until the shapes are right (see above)"
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        if not out.requires_grad:
            return "no gradient can reach x: the output is detached (torch.tensor, numpy or .detach() inside forward?)"
        out.backward(upstream)
        want = torch.zeros_like(x)
        want[:, :, ::2, ::2] = upstream[:, :case[0]]
        if x.grad is None or not torch.equal(x.grad, want):
            return ("x should receive the upstream gradient of the old channels at the kept positions and zero "
                    "everywhere else; the gradient of the padded channels goes nowhere")
        return None

    return run_checks("Option-A shortcut module", [
        ("an nn.Module without parameters or buffers", hinted(parameter_free)),
        ("refuses a channel decrease with a ValueError naming both counts", hinted(refuses_decrease)),
        ("output shape for every stride, channel increase and odd size", hinted(shapes)),
        ("equal to skiplib.blocks.PadShortcut", hinted(equal)),
        ("keeps the input's dtype", hinted(dtype)),
        ("the gradient reaches exactly the kept pixels of the old channels", hinted(gradient)),
    ], verbose=verbose)
