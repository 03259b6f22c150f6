"""Rank correlations (Kendall's tau-b, its sparse form, Spearman's rho with average ranks for ties), top-k
overlap, bootstrap intervals, a benchmark's signal-to-noise ratio and its noise ceiling, without SciPy."""

import math
import random
from statistics import mean, stdev
from typing import Callable, List, Sequence


def average_ranks(values: Sequence[float]) -> List[float]:
    """1-based ranks; tied values share the mean of their positions."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def _check(xs: Sequence[float], ys: Sequence[float]) -> None:
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError(f"rank correlation needs two equally long sequences of >= 2 values, got {len(xs)}, {len(ys)}")


def kendall_tau(xs: Sequence[float], ys: Sequence[float], y_tie: float = 0.0) -> float:
    """Kendall's tau-b (NaN when one sequence is constant). With ``y_tie > 0``, pairs whose ``ys`` differ by less
    than ``y_tie`` count as tied: the sparse tau of Yu et al. (ICLR 2020), where the ground truth cannot order
    architectures closer than its own noise."""
    _check(xs, ys)
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(xs)):
        for j in range(i + 1, len(xs)):
            dx, dy = xs[i] - xs[j], ys[i] - ys[j]
            if abs(dy) < y_tie:
                dy = 0
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denominator if denominator else float("nan")


def spearman_rho(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Pearson correlation of the average ranks (NaN when one sequence is constant)."""
    _check(xs, ys)
    rx, ry = average_ranks(xs), average_ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    var = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return cov / var if var else float("nan")


def top_k_overlap(xs: Sequence[float], ys: Sequence[float], k: int) -> float:
    """Share of the ``k`` highest ``ys`` that are also among the ``k`` highest ``xs`` (ties broken by index)."""
    _check(xs, ys)
    if not 1 <= k <= len(xs):
        raise ValueError(f"k must be in [1, {len(xs)}], got {k}")
    top = lambda values: set(sorted(range(len(values)), key=lambda i: -values[i])[:k])  # noqa: E731
    return len(top(xs) & top(ys)) / k


def bootstrap_interval(
    statistic: Callable[[List[float], List[float]], float],
    xs: Sequence[float],
    ys: Sequence[float],
    level: float = 0.9,
    samples: int = 2000,
    seed: int = 0,
) -> List[float]:
    """The central ``level`` interval of ``statistic`` over pairs resampled with replacement (percentile
    bootstrap; resamples where the statistic is NaN, e.g. all one architecture, are skipped)."""
    _check(xs, ys)
    rng = random.Random(seed)
    values = []
    for _ in range(samples):
        picks = [rng.randrange(len(xs)) for _ in range(len(xs))]
        value = statistic([xs[i] for i in picks], [ys[i] for i in picks])
        if not math.isnan(value):
            values.append(value)
    if not values:
        return [float("nan"), float("nan")]
    values.sort()
    low = values[int((1 - level) / 2 * (len(values) - 1))]
    high = values[int((1 + level) / 2 * (len(values) - 1))]
    return [low, high]


def signal_to_noise(runs: Sequence[Sequence[float]]) -> float:
    """Std over architectures of their mean result / mean over architectures of their std over seeds (sample
    stds; architectures with fewer than two seeds count for the first term only)."""
    means = [mean(r) for r in runs if r]
    noise = [stdev(r) for r in runs if len(r) >= 2]
    if len(means) < 2 or not noise:
        raise ValueError("the signal-to-noise ratio needs >= 2 architectures and one with >= 2 seeds")
    return stdev(means) / mean(noise) if mean(noise) else float("inf")


def seed_paired_noise(runs: Sequence[dict]) -> float:
    """The run-to-run noise left once each seed's shared effect is removed: the residual std of a two-way
    (architecture x seed) additive model, over the architectures that ran every seed of the first one's seeds.

    When every architecture is trained with the same seeds (the same initial RNG streams and data order), a lucky
    seed lifts all architectures alike: it moves every mean by the same amount and cannot change their order. This
    residual is the noise that can."""
    seeds = sorted(runs[0]) if runs else []
    rows = [[r[s] for s in seeds] for r in runs if all(s in r for s in seeds)]
    if len(rows) < 2 or len(seeds) < 2:
        raise ValueError("the seed-paired noise needs >= 2 architectures that ran the same >= 2 seeds")
    grand = mean(v for row in rows for v in row)
    arch_means = [mean(row) for row in rows]
    seed_means = [mean(row[j] for row in rows) for j in range(len(seeds))]
    residual = sum(
        (row[j] - arch_means[i] - seed_means[j] + grand) ** 2 for i, row in enumerate(rows) for j in range(len(seeds))
    )
    return math.sqrt(residual / ((len(rows) - 1) * (len(seeds) - 1)))


def noise_ceiling_tau(runs: Sequence[Sequence[float]], samples: int = 2000, seed: int = 0) -> float:
    """The Kendall tau a perfect predictor is expected to reach against these noisy per-architecture means.

    The true means are the observed ones shrunk toward their grand mean so that their spread excludes the part the
    seed noise explains (variance of the means minus the mean seed variance over the seed count); each sample adds
    fresh Gaussian seed noise of the measured size to them and scores the true order against the noisy means. A
    predictor's tau can only be judged against this ceiling, not against 1."""
    full = [list(r) for r in runs if len(r) >= 2]
    if len(full) < 2:
        raise ValueError("the noise ceiling needs >= 2 architectures with >= 2 seeds")
    means = [mean(r) for r in full]
    counts = [len(r) for r in full]
    noise_var = mean(stdev(r) ** 2 for r in full)
    grand, spread = mean(means), stdev(means) ** 2
    shrink = math.sqrt(max(0.0, 1.0 - noise_var / mean(counts) / spread)) if spread else 0.0
    if shrink == 0.0:
        return 0.0  # the seed noise explains all the spread: no order to find
    truth = [grand + (m - grand) * shrink for m in means]
    rng = random.Random(seed)
    taus = []
    for _ in range(samples):
        measured = [t + rng.gauss(0.0, math.sqrt(noise_var / n)) for t, n in zip(truth, counts)]
        taus.append(kendall_tau(truth, measured))
    return mean(taus)
