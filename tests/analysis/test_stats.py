"""Seed statistics shared by the multi-seed results (Chapters 3, 5 and 7)."""

import statistics

import pytest

from skiplib.analysis.stats import mean_std


def test_mean_and_sample_std_match_the_standard_library():
    values = [0.48, 0.47, 0.493]
    mean, std = mean_std(values)
    assert mean == pytest.approx(statistics.fmean(values))
    assert std == pytest.approx(statistics.stdev(values))  # ddof=1, not the population std


def test_one_seed_has_zero_spread():
    assert mean_std([0.25]) == (0.25, 0.0)


def test_no_values_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="at least one value"):
        mean_std([])
