"""A Transformer layer with its residual wiring as a switch (Chapter 9).

A decoder layer is two sublayers, causal self-attention and an MLP, each wrapped in a skip. Where
the LayerNorm sits relative to the skip is the whole difference between the wirings:

* ``pre_ln``: ``x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))``, GPT-2 and most models since: the
  stream ``x`` is never normalised, so every layer's output reaches the last layer by addition alone.
* ``post_ln``: ``x = ln_1(x + attn(x)); x = ln_2(x + mlp(x))``, the original Transformer (Vaswani
  et al. 2017): a LayerNorm sits *on* the skip path, after every addition.
* ``none``: ``x = attn(ln_1(x)); x = mlp(ln_2(x))``, pre-LN with the additions removed: a plain net.
* ``rezero``: ``x = x + alpha_1 * attn(x); x = x + alpha_2 * mlp(x)`` with ``alpha`` = 0 at the start
  and no LayerNorm (Bachlechner et al. 2021): every layer starts as the identity.

Attribute names follow nanoGPT (``ln_1``, ``attn.c_attn``, ``attn.c_proj``, ``ln_2``, ``mlp.c_fc``,
``mlp.c_proj``), so a learner's block can load this one's ``state_dict``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from skiplib.checks import check_positive_ints

WIRINGS = ("pre_ln", "post_ln", "none", "rezero")


def check_wiring(wiring: str) -> str:
    """``wiring`` if it is one of :data:`WIRINGS`, else a ValueError naming them."""
    if wiring not in WIRINGS:
        raise ValueError(f"wiring must be one of {', '.join(WIRINGS)}; got {wiring!r}")
    return wiring


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t sees only positions <= t."""

    def __init__(self, n_embd: int, n_head: int, block_size: int) -> None:
        super().__init__()
        check_positive_ints(n_embd=n_embd, n_head=n_head, block_size=block_size)
        if n_embd % n_head:
            raise ValueError(f"n_embd must be divisible by n_head, got n_embd={n_embd}, n_head={n_head}")
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)  # queries, keys and values in one matmul
        self.c_proj = nn.Linear(n_embd, n_embd)
        # not a parameter and not saved: it is rebuilt from block_size
        self.register_buffer("causal", torch.ones(block_size, block_size).tril().bool(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, channels = x.shape
        if steps > self.causal.shape[0]:
            raise ValueError(f"sequence of {steps} tokens is longer than block_size={self.causal.shape[0]}")
        q, k, v = self.c_attn(x).split(channels, dim=2)
        head = channels // self.n_head
        q = q.view(batch, steps, self.n_head, head).transpose(1, 2)  # (batch, heads, steps, head)
        k = k.view(batch, steps, self.n_head, head).transpose(1, 2)
        v = v.view(batch, steps, self.n_head, head).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(head)
        scores = scores.masked_fill(~self.causal[:steps, :steps], float("-inf"))
        out = F.softmax(scores, dim=-1) @ v
        out = out.transpose(1, 2).reshape(batch, steps, channels)
        return self.c_proj(out)


class MLP(nn.Module):
    """The position-wise feed-forward sublayer: widen 4x, GELU, project back."""

    def __init__(self, n_embd: int) -> None:
        super().__init__()
        check_positive_ints(n_embd=n_embd)
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class TransformerBlock(nn.Module):
    """One decoder layer, Chapter 9: attention then MLP, each with the skip ``wiring`` says."""

    def __init__(self, n_embd: int, n_head: int, block_size: int, wiring: str = "pre_ln") -> None:
        super().__init__()
        self.wiring = check_wiring(wiring)
        # ReZero drops LayerNorm altogether: the zero gate alone keeps the stream's scale in check
        norm = nn.Identity if wiring == "rezero" else nn.LayerNorm
        self.ln_1 = norm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, block_size)
        self.ln_2 = norm(n_embd)
        self.mlp = MLP(n_embd)
        if wiring == "rezero":
            self.alpha_1 = nn.Parameter(torch.zeros(()))
            self.alpha_2 = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.wiring == "pre_ln":
            x = x + self.attn(self.ln_1(x))
            x = x + self.mlp(self.ln_2(x))
        elif self.wiring == "post_ln":
            x = self.ln_1(x + self.attn(x))
            x = self.ln_2(x + self.mlp(x))
        elif self.wiring == "none":
            x = self.attn(self.ln_1(x))
            x = self.mlp(self.ln_2(x))
        else:  # rezero
            x = x + self.alpha_1 * self.attn(x)
            x = x + self.alpha_2 * self.mlp(x)
        return x

    def branches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The block's output and what each sublayer *added* to the stream (pre-LN and ReZero only,
        where the output is exactly ``x + added_attn + added_mlp``); used to split the stream."""
        if self.wiring not in ("pre_ln", "rezero"):
            raise ValueError(f"only pre_ln and rezero blocks add their sublayers to the stream; this one is {self.wiring}")
        scale_1 = self.alpha_1 if self.wiring == "rezero" else 1.0
        scale_2 = self.alpha_2 if self.wiring == "rezero" else 1.0
        added_attn = scale_1 * self.attn(self.ln_1(x))
        mid = x + added_attn
        added_mlp = scale_2 * self.mlp(self.ln_2(mid))
        return mid + added_mlp, added_attn, added_mlp
