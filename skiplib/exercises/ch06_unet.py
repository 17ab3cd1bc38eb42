"""Chapter 6 (U-Net): the grader of its coding exercise.

:func:`check_up_step`: grades a learner's ``Up`` step (upsample, pad to the skip's size,
  concatenate ``[skip, upsampled]``, DoubleConv) against :class:`skiplib.blocks.unet.Up` on
  shared weights, naming the usual mistakes: channel order, missing padding, the wrong
  concatenation dimension, a missing convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from skiplib.blocks.unet import Up, pad_to
from skiplib.exercises._runner import run_checks

# ---------------------------------------------------------------------------------------------
# The coding exercise: implement Up.forward(x1, x2).

_IN, _OUT = 16, 8
_EVEN = ((2, _IN, 4, 4), (2, _IN // 2, 8, 8))   # decoder map, skip
_ODD = ((2, _IN, 4, 5), (2, _IN // 2, 9, 11))   # the skip's odd size was floored by max-pooling


def _reference(seed: int = 0) -> Up:
    torch.manual_seed(seed)
    return Up(_IN, _OUT)


def _variant(ref: Up, x1: torch.Tensor, x2: torch.Tensor, mistake: str) -> torch.Tensor:
    """``ref``'s output computed with one typical ``mistake``, for a precise hint."""
    up = ref.up(x1)
    dh, dw = x2.shape[-2] - up.shape[-2], x2.shape[-1] - up.shape[-1]
    up = F.pad(up, [dw, 0, dh, 0]) if mistake == "pad_before" else pad_to(up, x2.shape[-2:])
    cat = torch.cat([up, x2] if mistake == "order" else [x2, up], dim=1)
    return ref.conv(cat)


_HINTS = {
    "order": "wrong channel order: concatenate the skip first, then the upsampled map: torch.cat([x2, x1], dim=1)",
    "pad_before": "padding on the wrong side: the missing row/column goes at the bottom/right, "
                  "F.pad(x1, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2]) (F.pad takes [left, right, top, bottom])",
}


def check_up_step(cls, *, verbose: bool = True) -> bool:
    """Chapter 6 exercise: ``cls(in_channels, out_channels)`` builds an ``Up`` step with
    attributes ``up`` (transposed conv, ``in_channels → in_channels // 2``) and ``conv``
    (``DoubleConv(in_channels, out_channels)``); its ``forward(x1, x2)`` must upsample ``x1``,
    pad it to ``x2``'s height and width, concatenate ``[x2, x1]`` along the channels and apply
    ``conv``. Prints what is right and what is not; returns True if all is."""
    built: list[nn.Module] = []

    def make() -> nn.Module:
        if not built:
            m = cls(_IN, _OUT)
            if not isinstance(m, nn.Module):
                raise TypeError(f"{getattr(cls, '__name__', cls)}(...) returned a {type(m).__name__}, not an nn.Module")
            built.append(m)
        return built[0]

    def parameters() -> str | None:
        mine = {k: tuple(v.shape) for k, v in make().state_dict().items()}
        want = {k: tuple(v.shape) for k, v in _reference().state_dict().items()}
        if mine != want:
            return (f"expected the parameters of skiplib.blocks.unet.Up({_IN}, {_OUT}): {sorted(want)}; got "
                    f"{sorted(mine)}. Keep the given __init__ (self.up and self.conv) and only write forward")
        return None

    def output(shapes: tuple[tuple[int, ...], tuple[int, ...]], seed: int) -> str | None:
        if parameters() is not None:
            return "skipped until the parameters match (see the check above)"
        ref, mine = _reference(seed), make()
        mine.load_state_dict(ref.state_dict())
        g = torch.Generator().manual_seed(seed)
        x1, x2 = (torch.randn(s, generator=g) for s in shapes)
        size = f"{x2.shape[-2]}x{x2.shape[-1]}"
        seen: dict[str, tuple[int, ...]] = {}

        def record_up(module, inputs, out) -> None:  # a hook that returned a value would replace the output
            seen.setdefault("up", tuple(out.shape))

        def record_conv(module, inputs) -> None:
            seen.setdefault("conv", tuple(inputs[0].shape))

        hooks = [mine.up.register_forward_hook(record_up), mine.conv.register_forward_pre_hook(record_conv)]
        try:
            with torch.no_grad():
                want = ref(x1, x2)
                got, error = None, None
                try:
                    got = mine(x1, x2)
                except NotImplementedError:  # the untouched placeholder (a RuntimeError): "not attempted"
                    raise
                except RuntimeError as e:  # a shape mismatch inside the learner's code: diagnose below
                    error = e
        finally:
            for h in hooks:
                h.remove()
        expected_cat = (x1.shape[0], _IN, x2.shape[-2], x2.shape[-1])
        if "up" not in seen:
            return "self.up was never applied: upsample x1 first (x1 = self.up(x1))"
        if "conv" in seen and seen["conv"] != expected_cat:
            dims = [d for d in (0, 2, 3) if seen["conv"][d] != expected_cat[d]]
            if seen["conv"][1] == _IN // 2 and dims:
                return (f"concatenated along dim {dims[0]} ({['batch', 'channels', 'height', 'width'][dims[0]]}): "
                        f"self.conv got shape {seen['conv']}; concatenate along the channels, dim=1")
            if seen["conv"][-2:] != expected_cat[-2:]:
                return (f"shape mismatch: self.conv got a {seen['conv'][-2]}x{seen['conv'][-1]} map for a skip of "
                        f"{size}; pad the upsampled map to the skip's size (do not crop the skip)")
            return f"self.conv should get shape {expected_cat} ([skip, upsampled] channels), got {seen['conv']}"
        if error is not None:
            if "up" in seen and seen["up"][-2:] != tuple(x2.shape[-2:]):
                return (f"shape mismatch: the upsampled map is {seen['up'][-2]}x{seen['up'][-1]} but the skip is "
                        f"{size} (an odd size floored by max-pooling); pad x1 to x2's size before concatenating "
                        f"({type(error).__name__}: {str(error).splitlines()[0]})")
            raise error
        if "conv" not in seen:
            return (f"missing conv: self.conv (the DoubleConv) was never applied; the output has shape "
                    f"{tuple(got.shape)} instead of {tuple(want.shape)}")
        if tuple(got.shape) != tuple(want.shape):
            return f"the output should have shape {tuple(want.shape)}, got {tuple(got.shape)}"
        if not torch.allclose(got, want, atol=1e-5, rtol=1e-4):
            with torch.no_grad():
                for mistake, hint in _HINTS.items():
                    if torch.allclose(got, _variant(ref, x1, x2, mistake), atol=1e-5, rtol=1e-4):
                        return hint
            return (f"the output differs from skiplib's Up (max difference {(got - want).abs().max().item():.3g}); "
                    "check: x1 = self.up(x1); pad x1 to x2's size; torch.cat([x2, x1], dim=1); self.conv(...)")
        return None

    def gradients() -> str | None:
        mine = make()
        mine.zero_grad()
        x1, x2 = torch.randn(_EVEN[0]), torch.randn(_EVEN[1])
        mine(x1, x2).square().mean().backward()
        missing = [n for n, p in mine.named_parameters() if p.grad is None]
        return f"these parameters get no gradient: {missing}" if missing else None

    return run_checks("U-Net Up step", [
        ("same parameters as skiplib.blocks.unet.Up", parameters),
        ("same output when sizes divide evenly (decoder 4x4, skip 8x8)", lambda: output(_EVEN, 1)),
        ("same output for an odd skip size (decoder 4x5, skip 9x11)", lambda: output(_ODD, 2)),
        ("every parameter gets a gradient", gradients),
    ], verbose=verbose)
