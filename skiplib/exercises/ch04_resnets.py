"""Chapter 4 (residual networks): the grader of its coding exercise.

:func:`check_bottleneck`: grades a learner's bottleneck block against
  :class:`skiplib.blocks.Bottleneck` on shared weights, with hints for the usual mistakes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from skiplib.blocks import Bottleneck
from skiplib.exercises._runner import randomise_, run_checks

# ---------------------------------------------------------------------------------------------
# The coding exercise: implement a bottleneck block.

_CASES = ((64, 16, 1), (32, 16, 2), (64, 32, 1))  # identity shortcut; projection with stride; projection, stride 1


def _randomised_reference(in_channels: int, planes: int, stride: int, seed: int) -> Bottleneck:
    """skiplib's block with random BN scales, shifts and running statistics, so that mixing up
    two BN layers or forgetting one changes the output."""
    g = torch.Generator().manual_seed(seed)
    ref = Bottleneck(in_channels, planes, stride)
    return randomise_(ref, g, bias_scale=0.2, mean_scale=0.1)


def _variant(ref: Bottleneck, x: torch.Tensor, mistake: str) -> torch.Tensor:
    """The output of ``ref`` (in its current mode) computed with one typical ``mistake``, for a precise hint."""
    stride = ref.conv2.stride[0]
    s1, s2 = (stride, 1) if mistake == "stride_first" else (1, stride)
    out = F.relu(ref.bn1(F.conv2d(x, ref.conv1.weight, stride=s1)))
    out = F.relu(ref.bn2(F.conv2d(out, ref.conv2.weight, stride=s2, padding=1)))
    out = ref.bn3(ref.conv3(out))
    if mistake in ("relu_before_add", "relu_moved"):
        out = F.relu(out)
    identity = x if ref.downsample is None else ref.downsample(x)
    if mistake != "no_shortcut":
        out = out + identity
    return out if mistake in ("no_final_relu", "relu_moved") else F.relu(out)


_HINTS = {
    "no_final_relu": "the block must apply ReLU *after* adding the shortcut: relu(F(x) + shortcut(x))",
    "relu_before_add": "apply the ReLU once, after the addition, not to bn3's output before it",
    "relu_moved": "the last ReLU belongs after the addition, not to bn3's output before it: relu(bn3(...) + shortcut(x))",
    "no_shortcut": "the output ignores the shortcut: add x (or downsample(x) when shapes change) before the last ReLU",
    "stride_first": "the stride belongs on the 3x3 conv (conv2), not on the first 1x1 conv (torchvision's 'v1.5')",
}


def check_bottleneck(cls, *, verbose: bool = True) -> bool:
    """Chapter 4 exercise: ``cls(in_channels, planes, stride)`` must build a bottleneck block
    equal to :class:`skiplib.blocks.Bottleneck` (option B shortcut): torchvision's attribute
    names, ``expansion = 4``, the same parameter shapes, and the same output on shared weights
    in train and eval mode. Prints what is right and what is not; returns True if all is."""
    built: dict[tuple[int, int, int], nn.Module] = {}

    def make(case: tuple[int, int, int]) -> nn.Module:
        if case not in built:
            block = cls(*case)
            if not isinstance(block, nn.Module):
                raise TypeError(f"{getattr(cls, '__name__', cls)}(...) returned a {type(block).__name__}, not an nn.Module")
            built[case] = block
        return built[case]

    def expansion() -> str | None:
        e = getattr(cls, "expansion", None)
        return None if e == 4 else f"set the class attribute expansion = 4 (the output has planes * 4 channels), got {e!r}"

    def parameter_problem(case: tuple[int, int, int]) -> str | None:
        mine = {k: tuple(v.shape) for k, v in make(case).state_dict().items()}
        want = {k: tuple(v.shape) for k, v in Bottleneck(*case).state_dict().items()}
        if set(mine) != set(want):
            modules = lambda keys: sorted({k.rsplit(".", 1)[0] for k in keys}) or "nothing"  # noqa: E731
            return (f"for in_channels, planes, stride = {case}: missing {modules(set(want) - set(mine))}, "
                    f"unexpected {modules(set(mine) - set(want))}; use the names conv1, bn1, conv2, bn2, conv3, "
                    "bn3 and downsample = nn.Sequential(conv1x1, BatchNorm2d), the latter only when the shape changes")
        wrong = [f"{k}: {mine[k]} instead of {want[k]}" for k in want if mine[k] != want[k]]
        if wrong:
            return f"for in_channels, planes, stride = {case}: wrong shapes, " + "; ".join(wrong[:3])
        return None

    def same_parameters() -> str | None:
        return next((p for p in map(parameter_problem, _CASES) if p is not None), None)

    def output(train: bool) -> str | None:
        for i, case in enumerate(_CASES):
            if parameter_problem(case) is not None:
                return "skipped until the parameters match skiplib's (see the check above)"
            ref = _randomised_reference(*case, seed=i)
            block = make(case)
            block.load_state_dict(ref.state_dict())
            x = torch.randn(4, case[0], 8, 8, generator=torch.Generator().manual_seed(10 + i))
            ref.train(train)
            block.train(train)
            with torch.no_grad():
                want, got = ref(x), block(x)
            if tuple(got.shape) != tuple(want.shape):
                return (f"for in_channels, planes, stride = {case} the output should have shape "
                        f"{tuple(want.shape)}, got {tuple(got.shape)}")
            if not torch.allclose(got, want, atol=1e-5, rtol=1e-4):
                with torch.no_grad():
                    for mistake, hint in _HINTS.items():
                        if torch.allclose(got, _variant(ref, x, mistake), atol=1e-5, rtol=1e-4):
                            return f"for in_channels, planes, stride = {case}: {hint}"
                return (f"for in_channels, planes, stride = {case} the output differs from skiplib's "
                        f"(max difference {(got - want).abs().max().item():.3g}); check the order "
                        "conv1-bn1-relu, conv2-bn2-relu, conv3-bn3, + shortcut, relu")
        return None

    def gradients() -> str | None:
        block = make(_CASES[1])
        block.train()
        block.zero_grad()
        block(torch.randn(4, _CASES[1][0], 8, 8)).square().mean().backward()
        missing = [n for n, p in block.named_parameters() if p.grad is None]
        return f"these parameters get no gradient: {missing}" if missing else None

    return run_checks("Bottleneck block", [
        ("expansion is 4", expansion),
        ("same parameters as skiplib.blocks.Bottleneck", same_parameters),
        ("same output in eval mode (shared weights)", lambda: output(False)),
        ("same output in train mode (batch statistics)", lambda: output(True)),
        ("every parameter gets a gradient", gradients),
    ], verbose=verbose)
