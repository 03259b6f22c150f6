"""Rank correlations used by the ranking check (values checked by hand)."""

import math

import pytest

from detnas_d2.search.rank_stats import average_ranks, kendall_tau, spearman_rho


def test_hand_computed_values():
    x, y = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5]
    assert kendall_tau(x, y) == pytest.approx(0.6)  # 8 concordant, 2 discordant pairs
    assert spearman_rho(x, y) == pytest.approx(0.8)  # 1 - 6 * 4 / (5 * 24)
    assert kendall_tau(x, x[::-1]) == pytest.approx(-1.0)


def test_ties_use_tau_b_and_average_ranks():
    assert average_ranks([3, 1, 3, 2]) == [3.5, 1.0, 3.5, 2.0]
    assert kendall_tau([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / math.sqrt(6 * 5))
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="two equally long"):
        spearman_rho([1, 2], [1])
