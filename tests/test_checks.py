"""skiplib.checks: the argument checks every layer shares say what was wrong and what is allowed."""

import pytest

from skiplib.checks import (
    check_cifar_depth,
    check_non_negative_ints,
    check_positive_int_sequence,
    check_positive_ints,
    is_cifar_depth,
)


@pytest.mark.parametrize("bad", [0, -3, 2.0, "4", True, None])
def test_positive_ints_name_the_argument(bad):
    check_positive_ints(channels=1, epochs=7)
    with pytest.raises(ValueError, match=rf"^epochs must be a positive int, got {bad!r}$"):
        check_positive_ints(channels=1, epochs=bad)


@pytest.mark.parametrize("bad", [-1, 0.5, False])
def test_non_negative_ints_accept_zero(bad):
    check_non_negative_ints(seed=0, n=3)
    with pytest.raises(ValueError, match=rf"^seed must be a non-negative int, got {bad!r}$"):
        check_non_negative_ints(seed=bad)


def test_positive_int_sequence():
    assert check_positive_int_sequence("widths", [16, 32, 64], "widths", length=3) == (16, 32, 64)
    assert check_positive_int_sequence("block_config", (1,), "layer counts") == (1,)
    with pytest.raises(ValueError, match=r"^widths must be 3 channel counts, got \(16, 32\)$"):
        check_positive_int_sequence("widths", (16, 32), "channel counts", length=3)
    with pytest.raises(ValueError, match=r"^block_config must be a non-empty list of layer counts, got \(\)$"):
        check_positive_int_sequence("block_config", (), "layer counts")
    with pytest.raises(ValueError, match=r"^layers must be 4 counts, got 4$"):
        check_positive_int_sequence("layers", 4, "counts", length=4)
    with pytest.raises(ValueError, match=r"^widths\[1\] must be a positive int, got -32$"):
        check_positive_int_sequence("widths", (16, -32, 64), "channel counts", length=3)


@pytest.mark.parametrize("depth,n", [(8, 1), (20, 3), (56, 9), (110, 18)])
def test_cifar_depth_gives_blocks_per_stage(depth, n):
    assert is_cifar_depth(depth) and check_cifar_depth(depth) == n


@pytest.mark.parametrize("depth", [2, 14.0, 21, 0, -4, "20", True])
def test_other_depths_are_refused_with_the_rule(depth):
    assert not is_cifar_depth(depth)
    with pytest.raises(ValueError, match=r"^highway CIFAR net depth must be 6n\+2 with n >= 1 \(8, 14, 20"):
        check_cifar_depth(depth, "highway CIFAR net")
