"""Argument checks shared by every layer of skiplib (it imports nothing from skiplib)."""

from __future__ import annotations


def check_positive_ints(**values: int) -> None:
    """Raise a ValueError unless every named value is a positive int (channels, widths, epochs …)."""
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
