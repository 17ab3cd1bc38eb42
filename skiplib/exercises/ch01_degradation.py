"""Chapter 1's grader: the option-A (zero-padding) shortcut."""

from __future__ import annotations

from collections.abc import Callable

import torch

from skiplib.exercises._runner import run_checks


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

