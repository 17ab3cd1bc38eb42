"""Chapter 9 (the Transformer's residual stream): the grader of its coding exercise, a pre-LN block.

The learner writes ``cls(n_embd, n_head, block_size)`` with the attributes ``ln_1``, ``attn``,
``ln_2`` and ``mlp`` (nanoGPT's names, the same as :class:`skiplib.blocks.transformer.TransformerBlock`),
so the grader can load the reference block's weights into it and compare outputs exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from skiplib.blocks.transformer import TransformerBlock
from skiplib.exercises._runner import run_checks

SIZES = (32, 4, 8)  # n_embd, n_head, block_size


def check_pre_ln_block(cls, *, verbose: bool = True) -> bool:
    """Grade ``cls(n_embd, n_head, block_size)``: x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))."""
    g = torch.Generator().manual_seed(0)
    x = 3.0 * torch.randn(2, 8, SIZES[0], generator=g) + 1.0  # far from unit variance: a misplaced LayerNorm shows

    def pair() -> tuple[nn.Module, TransformerBlock]:
        torch.manual_seed(0)
        reference = TransformerBlock(*SIZES, wiring="pre_ln")
        for p in reference.parameters():  # LayerNorm's default weight 1 and bias 0 would hide a swapped ln_1/ln_2
            p.data.add_(0.1 * torch.randn(p.shape, generator=g))
        return cls(*SIZES), reference

    def loaded() -> tuple[nn.Module, TransformerBlock]:
        mine, reference = pair()
        mine.load_state_dict(reference.state_dict(), strict=True)
        return mine.eval(), reference.eval()

    def has_parts() -> str | None:
        mine, reference = pair()
        missing = [a for a in ("ln_1", "attn", "ln_2", "mlp") if not isinstance(getattr(mine, a, None), nn.Module)]
        if missing:
            return f"the block needs the sublayers ln_1, attn, ln_2 and mlp as attributes; missing: {', '.join(missing)}"
        try:
            mine.load_state_dict(reference.state_dict(), strict=True)
        except RuntimeError as err:
            return ("its parameters should be exactly those of two LayerNorm(n_embd), a CausalSelfAttention and an "
                    f"MLP; loading the reference weights said: {str(err).splitlines()[0]}")
        return None

    def same_output() -> str | None:
        mine, reference = loaded()
        with torch.no_grad():
            out, expected = mine(x), reference(x)
            if out.shape != x.shape:
                return f"the output must have the input's shape {tuple(x.shape)}, got {tuple(out.shape)}"
            if torch.allclose(out, expected, atol=1e-5):
                return None
            post = reference.ln_1(x + reference.attn(x))
            post = reference.ln_2(post + reference.mlp(post))
            if torch.allclose(out, post, atol=1e-5):
                return "this is the post-LN block (LayerNorm after each addition); pre-LN normalises only the branch's input"
            plain = reference.mlp(reference.ln_2(reference.attn(reference.ln_1(x))))
            if torch.allclose(out, plain, atol=1e-5):
                return "the skips are missing: each sublayer's output must be *added* to its input, x = x + f(ln(x))"
            h = x + reference.attn(reference.ln_1(x))
            if torch.allclose(out, h + reference.mlp(reference.ln_1(h)), atol=1e-5):
                return "the MLP's branch must use ln_2, not ln_1 (each sublayer has its own LayerNorm)"
            gap = (out - expected).abs().max()
            return f"the output differs from x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)) by up to {gap:.3g}"

    def still_causal() -> str | None:
        mine, _ = loaded()
        changed = x.clone()
        changed[:, 5:] += 1.0
        with torch.no_grad():
            if not torch.allclose(mine(x)[:, :5], mine(changed)[:, :5], atol=1e-6):
                return "a later token changed an earlier output: use the CausalSelfAttention you were given"
        return None

    def stream_passes_through() -> str | None:
        mine, _ = loaded()
        mine.zero_grad()
        y = x.clone().requires_grad_(True)
        mine(y).sum().backward()
        # with the skips, d(sum of outputs)/dx is 1 + (what the branches add); without, it carries no 1
        with torch.no_grad():
            for lin in (mine.attn.c_proj, mine.mlp.c_proj):
                lin.weight.zero_()
                lin.bias.zero_()
        z = x.clone().requires_grad_(True)
        mine(z).sum().backward()
        if not torch.allclose(z.grad, torch.ones_like(z.grad)):
            return "with both branches silenced the block must be the identity (gradient 1 to its input): is x added back?"
        return None

    return run_checks("pre-LN Transformer block", [
        ("sublayers ln_1, attn, ln_2, mlp with the reference's parameters", has_parts),
        ("x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))", same_output),
        ("a future token never changes an earlier output", still_causal),
        ("with silent branches the block is the identity", stream_passes_through),
    ], verbose=verbose)
