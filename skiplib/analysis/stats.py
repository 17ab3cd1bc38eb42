"""Statistics over seeds, as every multi-seed result reports them."""

from __future__ import annotations

import math
from collections.abc import Sequence


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``) of ``values``; the std of a single value is 0,
    since one seed says nothing about the spread. A ValueError for no values."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std needs at least one value (got none): was every seed's run empty?")
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
