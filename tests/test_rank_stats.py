"""Rank correlations used by the ranking check (values checked by hand)."""

import math
import random

import pytest

from detnas_d2.search.rank_stats import (
    average_ranks,
    bootstrap_interval,
    kendall_tau,
    noise_ceiling_tau,
    seed_paired_noise,
    signal_to_noise,
    spearman_rho,
    top_k_overlap,
)


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


def test_sparse_tau_ties_pairs_closer_than_the_noise():
    x, y = [1, 2, 3, 4], [10.0, 10.3, 12.0, 11.9]
    # plain tau: 5 concordant, 1 discordant (the 12.0 / 11.9 pair)
    assert kendall_tau(x, y) == pytest.approx(4 / 6)
    # with a 0.5 noise level the pairs (10.0, 10.3) and (12.0, 11.9) are ties in y: 4 concordant of 4 + 2 ties
    assert kendall_tau(x, y, y_tie=0.5) == pytest.approx(4 / math.sqrt(6 * 4))


def test_top_k_overlap_and_its_range_check():
    assert top_k_overlap([5, 4, 3, 2, 1], [1, 4, 3, 2, 5], 2) == 0.5  # top-2 by x {0, 1}, by y {4, 1}
    assert top_k_overlap([1, 2, 3], [1, 2, 3], 3) == 1.0
    with pytest.raises(ValueError, match="k must be"):
        top_k_overlap([1, 2], [1, 2], 3)


def test_bootstrap_interval_holds_the_statistic_and_is_seeded():
    rng = random.Random(1)
    x = [rng.random() for _ in range(30)]
    y = [a + 0.3 * rng.random() for a in x]
    low, high = bootstrap_interval(kendall_tau, x, y, samples=300)
    assert low < kendall_tau(x, y) < high <= 1.0
    assert bootstrap_interval(kendall_tau, x, y, samples=300) == [low, high]
    assert bootstrap_interval(kendall_tau, x, x, samples=300) == [1.0, 1.0]


def test_signal_to_noise():
    # means 10 and 14 (std 2.83), seed stds 1 and 1 (mean 1)
    assert signal_to_noise([[9, 10, 11], [13, 14, 15]]) == pytest.approx(math.sqrt(8))
    with pytest.raises(ValueError, match="signal-to-noise"):
        signal_to_noise([[1.0], [2.0]])


def test_seed_paired_noise_removes_a_seed_effect_shared_by_all_architectures():
    # seed 1 is 6 AP worse for every architecture: large per-architecture spread, no residual at all
    shared = [{"0": 30.0, "1": 24.0}, {"0": 26.0, "1": 20.0}, {"0": 20.0, "1": 14.0}]
    assert seed_paired_noise(shared) == pytest.approx(0.0)
    assert signal_to_noise([list(r.values()) for r in shared]) < 2  # unpaired, the seed effect counts as noise
    # an interaction: architecture 0 swaps its seeds' luck (residuals +-1 around the additive fit)
    swapped = [{"0": 29.0, "1": 25.0}, {"0": 27.0, "1": 19.0}, {"0": 21.0, "1": 13.0}]
    assert seed_paired_noise(swapped) > 0.5
    with pytest.raises(ValueError, match="seed-paired"):
        seed_paired_noise([{"0": 1.0}])


def test_noise_ceiling_falls_from_one_to_zero_as_seed_noise_swamps_the_spread():
    spread = [[10.0 * i + d for d in (-0.1, 0.0, 0.1)] for i in range(8)]  # means 10 apart, seed std 0.1
    assert noise_ceiling_tau(spread, samples=200) == pytest.approx(1.0)
    noisy = [[i * 0.1 + d for d in (-5.0, 0.0, 5.0)] for i in range(8)]  # seed std 5 dwarfs the 0.1 steps
    assert noise_ceiling_tau(noisy, samples=200) == 0.0
    middle = [[2.0 * i + d for d in (-2.0, 0.0, 2.0)] for i in range(8)]
    ceiling = noise_ceiling_tau(middle, samples=200, seed=3)
    assert 0.3 < ceiling < 0.95 and ceiling == noise_ceiling_tau(middle, samples=200, seed=3)
    with pytest.raises(ValueError, match="2 architectures"):
        noise_ceiling_tau([[1.0, 2.0]])
