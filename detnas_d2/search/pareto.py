"""NSGA-II building blocks over two objectives: fitness (maximised) and one cost (minimised).

A point is ``(fitness, cost)``; a ``None`` fitness (non-finite metric) is worse than any number. Every function
is deterministic: ties keep the order of the input points.
"""

from typing import List, Sequence, Tuple

Point = Tuple[float | None, float]


def _fitness(point: Point) -> float:
    """The fitness of ``point`` with ``None`` as minus infinity."""
    return float("-inf") if point[0] is None else point[0]


def dominates(a: Point, b: Point) -> bool:
    """Whether ``a`` is at least as good as ``b`` in both objectives and better in one."""
    fa, fb = _fitness(a), _fitness(b)
    return fa >= fb and a[1] <= b[1] and (fa > fb or a[1] < b[1])


def non_dominated_fronts(points: Sequence[Point]) -> List[List[int]]:
    """Indices of ``points`` grouped into fronts: front 0 is non-dominated, front 1 is once removed, ..."""
    dominated_by = [[j for j in range(len(points)) if dominates(points[i], points[j])] for i in range(len(points))]
    counts = [sum(dominates(q, p) for q in points) for p in points]
    fronts, current = [], [i for i, count in enumerate(counts) if count == 0]
    while current:
        fronts.append(current)
        following = []
        for i in current:
            for j in dominated_by[i]:
                counts[j] -= 1
                if counts[j] == 0:
                    following.append(j)
        current = sorted(following)
    return fronts


def crowding_distances(points: Sequence[Point], front: Sequence[int]) -> List[float]:
    """Crowding distance of each member of ``front`` (same order); the two ends of each objective get infinity."""
    distance = {i: 0.0 for i in front}
    for value in (_fitness, lambda p: p[1]):
        ordered = sorted(front, key=lambda i: value(points[i]))
        low, high = value(points[ordered[0]]), value(points[ordered[-1]])
        distance[ordered[0]] = distance[ordered[-1]] = float("inf")
        span = high - low
        if span == 0 or span == float("inf"):
            continue
        for before, i, after in zip(ordered, ordered[1:-1], ordered[2:]):
            distance[i] += (value(points[after]) - value(points[before])) / span
    return [distance[i] for i in front]


def rank_and_crowding(points: Sequence[Point]) -> List[Tuple[int, float]]:
    """``(front index, crowding distance)`` of every point: the crowded-comparison key of NSGA-II."""
    keys: List[Tuple[int, float]] = [(0, 0.0)] * len(points)
    for rank, front in enumerate(non_dominated_fronts(points)):
        for i, crowd in zip(front, crowding_distances(points, front)):
            keys[i] = (rank, crowd)
    return keys


def select_survivors(points: Sequence[Point], size: int) -> List[int]:
    """NSGA-II environmental selection: whole fronts in order, the last one cut by descending crowding distance."""
    survivors: List[int] = []
    for front in non_dominated_fronts(points):
        if len(survivors) + len(front) <= size:
            survivors += front
            continue
        crowd = crowding_distances(points, front)
        by_crowding = sorted(range(len(front)), key=lambda k: -crowd[k])
        survivors += [front[k] for k in by_crowding[: size - len(survivors)]]
        break
    return survivors
