"""Chapter 9's sequence models in the run-time estimates and the T4 memory check (book tooling)."""

from __future__ import annotations

import torch
from torch import nn


class TokenModel(nn.Module):
    """A sequence model seen as the image jobs see theirs: float input ``[B, T]`` (made into valid token
    ids), logits ``[B, V, T]`` with the classes on dim 1, one target per position, as for a U-Net's pixels."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.long().remainder(self.model.config.vocab_size)).transpose(1, 2)
