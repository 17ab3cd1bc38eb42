"""Argument checks shared by every layer of skiplib (it imports nothing from skiplib).

Each check raises a ValueError that names the argument, says what is allowed and shows what
it got, so a typo fails at the call instead of deep inside torch.
"""

from __future__ import annotations


def _check_ints(minimum: int, allowed: str, values: dict) -> None:
    for name, v in values.items():
        # bool is an int subclass, but True channels or False epochs is always a mistake
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(f"{name} must be a {allowed} int, got {v!r}")


def check_positive_ints(**values: int) -> None:
    """Raise a ValueError unless every named value is a positive int (channels, widths, epochs …)."""
    _check_ints(1, "positive", values)


def check_non_negative_ints(**values: int) -> None:
    """Raise a ValueError unless every named value is an int >= 0 (seeds, counts that may be zero)."""
    _check_ints(0, "non-negative", values)


def check_positive_int_sequence(name: str, values, what: str, *, length: int | None = None) -> tuple[int, ...]:
    """``values`` as a tuple if it is a list or tuple of positive ints: ``length`` of them, or at
    least one when ``length`` is None. ``what`` describes the items for the message, e.g.
    ``"channel counts, one per stage (e.g. (16, 32, 64))"``; a bad item is named by its index
    (``widths[1] must be a positive int, got -32``)."""
    if not isinstance(values, (tuple, list)) or not values or (length is not None and len(values) != length):
        count = "a non-empty list of" if length is None else str(length)
        raise ValueError(f"{name} must be {count} {what}, got {values!r}")
    check_positive_ints(**{f"{name}[{i}]": v for i, v in enumerate(values)})
    return tuple(values)


def is_cifar_depth(depth) -> bool:
    """True for a depth of the CIFAR ResNet layout (He et al. 2016, Sec. 4.2): three stages of n
    two-conv blocks, a stem conv and a classifier, so 6n + 2 weighted layers with n >= 1."""
    return not isinstance(depth, bool) and isinstance(depth, int) and depth >= 8 and (depth - 2) % 6 == 0


def check_cifar_depth(depth, family: str = "CIFAR ResNet") -> int:
    """n, the blocks per stage, of a CIFAR net of ``depth`` = 6n + 2 layers; a ValueError naming
    ``family`` ("CIFAR ResNet depth must be 6n+2 ...") for any other depth."""
    if not is_cifar_depth(depth):
        raise ValueError(f"{family} depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), got {depth!r}")
    return (depth - 2) // 6
