"""Chapter 9's exercise: a pre-LN Transformer block, graded by ``check_pre_ln_block``; each common
mistake fails with the hint that names it."""

import pytest
from torch import nn

from skiplib.blocks.transformer import MLP, CausalSelfAttention, TransformerBlock
from skiplib.exercises import NOT_ATTEMPTED, check_pre_ln_block


class Parts(nn.Module):
    def __init__(self, n_embd, n_head, block_size):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, block_size)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd)


def attempt(forward):
    return type("Attempt", (Parts,), {"forward": forward})


def good(self, x):
    x = x + self.attn(self.ln_1(x))
    return x + self.mlp(self.ln_2(x))


def post_ln(self, x):
    x = self.ln_1(x + self.attn(x))
    return self.ln_2(x + self.mlp(x))


def no_skip(self, x):
    return self.mlp(self.ln_2(self.attn(self.ln_1(x))))


def one_norm(self, x):
    x = x + self.attn(self.ln_1(x))
    return x + self.mlp(self.ln_1(x))


def not_attempted(self, x):
    raise NotImplementedError


def test_the_solution_and_skiplib_pass():
    assert check_pre_ln_block(attempt(good))
    assert check_pre_ln_block(lambda *sizes: TransformerBlock(*sizes, wiring="pre_ln"))


@pytest.mark.parametrize("forward, hint", [
    (post_ln, "this is the post-LN block"),
    (no_skip, "the skips are missing"),
    (one_norm, "must use ln_2, not ln_1"),
])
def test_each_mistake_fails_with_its_hint(forward, hint, capsys):
    assert not check_pre_ln_block(attempt(forward))
    assert hint in capsys.readouterr().out


def test_missing_sublayers_are_named(capsys):
    class Bare(nn.Module):
        def __init__(self, n_embd, n_head, block_size):
            super().__init__()
            self.ln_1 = nn.LayerNorm(n_embd)

        def forward(self, x):
            return x

    assert not check_pre_ln_block(Bare)
    assert "missing: attn, ln_2, mlp" in capsys.readouterr().out


def test_a_placeholder_is_not_attempted(capsys):
    assert not check_pre_ln_block(attempt(not_attempted))
    assert NOT_ATTEMPTED in capsys.readouterr().out
