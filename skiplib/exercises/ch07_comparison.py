"""Chapter 7 (the skip family side by side): the grader of its coding exercise, a ReZero block.

ReZero (Bachlechner et al. 2021) writes a residual block as ``y = shortcut(x) + alpha * F(x)``
with one learned scalar ``alpha`` that starts at zero: every block is exactly its shortcut at
initialisation, with no normalisation trick needed. The learner's class must have the
attributes ``residual`` (the branch F), ``shortcut`` (identity, or option A when the shape
changes) and ``alpha`` (an ``nn.Parameter`` holding one number).
"""

from __future__ import annotations

import torch
from torch import nn

from skiplib.exercises._runner import run_checks


def check_rezero_block(cls, *, verbose: bool = True) -> bool:
    """Grade ``cls(in_channels, out_channels, stride)``, a ReZero residual block."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 16, 8, 8, generator=g)  # negative entries too: a ReLU after the sum would show

    def make(cin: int = 16, cout: int = 16, stride: int = 1) -> nn.Module:
        torch.manual_seed(0)
        return cls(cin, cout, stride)

    def has_parts() -> str | None:
        block = make()
        missing = [a for a in ("residual", "shortcut", "alpha") if not hasattr(block, a)]
        if missing:
            return f"the block needs the attributes residual, shortcut and alpha; missing: {', '.join(missing)}"
        if not isinstance(block.alpha, nn.Parameter):
            return ("alpha must be an nn.Parameter (a plain tensor or float is not trained by SGD); "
                    "hint: self.alpha = nn.Parameter(torch.zeros(1))")
        if block.alpha.numel() != 1:
            return f"alpha must hold a single number, it has {block.alpha.numel()}"
        return None

    def identity_at_init() -> str | None:
        block = make().train()
        out = block(x)
        if not torch.equal(out, x):
            if torch.equal(out, torch.relu(x)):
                return "the block applies a ReLU after the addition: ReZero's y = x + alpha * F(x) has none"
            return (f"at initialisation the block must return x exactly (alpha = 0), largest difference "
                    f"{(out - x).abs().max().item():.3g}; is alpha initialised to zero?")
        return None

    def downsampling_shape() -> str | None:
        out = make(16, 32, 2)(x)
        if tuple(out.shape) != (4, 32, 4, 4):
            return f"16 -> 32 channels with stride 2 should give shape (4, 32, 4, 4), got {tuple(out.shape)}"
        return None

    def scaled_branch() -> str | None:
        block = make().eval()
        with torch.no_grad():
            block.alpha.fill_(0.37)
            expected = block.shortcut(x) + 0.37 * block.residual(x)
        out = block(x)
        if not torch.allclose(out, expected, atol=1e-6):
            return "with alpha = 0.37 the output should be shortcut(x) + 0.37 * residual(x)"
        return None

    def alpha_learns_first() -> str | None:
        block = make().train()
        block(x).pow(2).sum().backward()
        if block.alpha.grad is None or block.alpha.grad.abs().item() == 0:
            return "alpha gets no gradient at initialisation: does the forward pass use self.alpha?"
        branch = [p.grad for p in block.residual.parameters() if p.grad is not None]
        if any(gr.abs().sum() != 0 for gr in branch):
            return "with alpha = 0 the branch's weights should get zero gradient; is alpha multiplying F(x)?"
        return None

    return run_checks("ReZero block", [
        ("attributes residual, shortcut and a scalar parameter alpha", has_parts),
        ("exactly the identity at initialisation", identity_at_init),
        ("downsampling block: output shape", downsampling_shape),
        ("y = shortcut(x) + alpha * residual(x)", scaled_branch),
        ("at initialisation only alpha learns", alpha_learns_first),
    ], verbose=verbose)
