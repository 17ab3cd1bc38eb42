"""A small decoder-only Transformer whose residual wiring is a switch (Chapter 9).

Read it like nanoGPT: a config dataclass, token and position embeddings, ``n_layer`` blocks
(:class:`~skiplib.blocks.transformer.TransformerBlock`), a final LayerNorm where the wiring needs
one, and a linear head.

Initialisation is the original Transformer's, which Xiong et al. (2020) analyse: Xavier-uniform
Linear weights, zero biases, and embeddings of unit variance per coordinate (the original scales
N(0, 1/d) embeddings by sqrt(d); this draws them at that scale directly). It is the same for every
wiring, so an experiment that compares wirings compares only the wiring. nanoGPT's N(0, 0.02)
weights with GPT-2's 1/sqrt(2 n_layer) shrinking of each output projection are themselves a careful
initialisation that makes every sublayer start small, of the kind Chapter 9 discusses; they are
left out on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from skiplib.blocks.transformer import TransformerBlock, check_wiring
from skiplib.checks import check_positive_ints


@dataclass(frozen=True)
class TransformerConfig:
    """Sizes of :class:`Transformer`. ``vocab_size`` counts every token id the model can see."""

    vocab_size: int
    block_size: int
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 64
    wiring: str = "pre_ln"

    def __post_init__(self) -> None:
        check_positive_ints(vocab_size=self.vocab_size, block_size=self.block_size, n_layer=self.n_layer,
                            n_head=self.n_head, n_embd=self.n_embd)
        check_wiring(self.wiring)
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd must be divisible by n_head, got n_embd={self.n_embd}, n_head={self.n_head}")


def parameter_count(config: TransformerConfig) -> int:
    """The number of parameters of ``Transformer(config)``, from the formula, not from a model.

    With C = n_embd, a layer holds 12 C^2 + 9 C weights and biases (attention 4 C^2 + 4 C, MLP
    8 C^2 + 5 C) plus two LayerNorms (4 C) or, for ReZero, two gates; the model adds the token
    and position embeddings, a final LayerNorm (pre-LN and no-residual) and the head (V C).
    """
    c, v = config.n_embd, config.vocab_size
    per_layer = 12 * c * c + 9 * c + (2 if config.wiring == "rezero" else 4 * c)
    final_norm = 2 * c if config.wiring in ("pre_ln", "none") else 0
    return v * c + config.block_size * c + config.n_layer * per_layer + final_norm + v * c


class Transformer(nn.Module):
    """Decoder-only Transformer, Chapter 9: ``forward(idx)`` maps token ids ``[B, T]`` to logits ``[B, T, V]``."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        c = config.n_embd
        self.wte = nn.Embedding(config.vocab_size, c)
        self.wpe = nn.Embedding(config.block_size, c)
        self.h = nn.ModuleList(TransformerBlock(c, config.n_head, config.block_size, config.wiring)
                               for _ in range(config.n_layer))
        # pre-LN's stream is a raw sum of every layer's output: it needs one LayerNorm before the
        # head. Post-LN's stream was just normalised; ReZero has no LayerNorm by design.
        self.ln_f = nn.LayerNorm(c) if config.wiring in ("pre_ln", "none") else nn.Identity()
        self.lm_head = nn.Linear(c, config.vocab_size, bias=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=1.0)

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """The stream before the first layer: token plus position embedding."""
        if idx.dim() != 2:
            raise ValueError(f"idx must be token ids of shape [batch, steps], got shape {tuple(idx.shape)}")
        steps = idx.shape[1]
        if steps > self.config.block_size:
            raise ValueError(f"sequence of {steps} tokens is longer than block_size={self.config.block_size}")
        pos = torch.arange(steps, device=idx.device)
        return self.wte(idx) + self.wpe(pos)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.embed(idx)
        for block in self.h:
            x = block(x)
        x = self.ln_f(x)
        return self.lm_head(x)
