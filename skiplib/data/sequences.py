"""Chapter 9's sequence task, generated from a seed: sort a list of digits. Nothing is downloaded.

A sample is ``x_1 … x_n | y_1 … y_n`` with ``y`` the sorted ``x`` and ``|`` a separator token
(id ``n_symbols``). A decoder model reads the sequence left to right and is scored only where it
predicts the ``y`` tokens. Writing ``y_k`` needs the k-th smallest of the ``x``: the model has to
compare every input with every other and count, which one attention layer cannot do alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from skiplib.checks import check_positive_ints


@dataclass(frozen=True)
class SortTask:
    """Sort ``length`` symbols drawn uniformly from ``0 … n_symbols - 1`` (repeats allowed)."""

    length: int = 8
    n_symbols: int = 10

    def __post_init__(self) -> None:
        check_positive_ints(length=self.length, n_symbols=self.n_symbols)

    @property
    def separator(self) -> int:
        return self.n_symbols

    @property
    def vocab_size(self) -> int:
        """Token ids a model must embed: the symbols and the separator."""
        return self.n_symbols + 1

    @property
    def block_size(self) -> int:
        """Tokens a model reads: the input, the separator and all answer tokens but the last."""
        return 2 * self.length

    def sequences(self, n: int, seed: int | None = None, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` whole samples ``[n, 2 * length + 1]``; the same ``seed`` gives the same samples.
        Pass ``generator`` instead to draw a stream of fresh batches from one seed."""
        check_positive_ints(n=n)
        if (seed is None) == (generator is None):
            raise ValueError("pass exactly one of seed (for a fixed set) or generator (for a stream of batches)")
        if generator is None:
            generator = torch.Generator().manual_seed(seed)
        x = torch.randint(0, self.n_symbols, (n, self.length), generator=generator)
        sep = torch.full((n, 1), self.separator, dtype=x.dtype)
        return torch.cat([x, sep, x.sort(dim=1).values], dim=1)

    def batch(self, n: int, seed: int | None = None, *,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Model inputs ``[n, block_size]``, next-token targets of the same shape, and the mask of the
        positions that are scored (those whose target is an answer token)."""
        seq = self.sequences(n, seed, generator=generator)
        inputs, targets = seq[:, :-1], seq[:, 1:]
        mask = torch.zeros_like(targets, dtype=torch.bool)
        mask[:, self.length:] = True  # target index length is y_1: the model has just read the separator
        return inputs, targets, mask
