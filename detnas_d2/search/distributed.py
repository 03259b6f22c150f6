"""One search in several processes: the main rank runs the search and broadcasts every batch of candidates it
scores; the other ranks score the same batches with their own fitness, so a collective fitness can shard the
batch (or the dataset) across ranks. Only the main rank's scores are used.

Messages: ``{"op": "evaluate", "archs": [...]}`` before each fitness call of the main rank, and ``{"op": "stop"}``
at the end (or on an error of the main rank), which releases the other ranks. ``broadcast(obj)`` returns ``obj``
on the main rank and the main rank's object on the others (e.g. :func:`broadcast_from_main`).
"""

from typing import Any, Callable, List

import torch.distributed as dist

Broadcast = Callable[[Any], Any]

STOP = {"op": "stop"}


def broadcast_from_main(obj):
    """The main rank's ``obj`` on every rank."""
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class BroadcastFitness:
    """The main rank's fitness: sends each batch of candidates to the other ranks, then scores it."""

    def __init__(self, fitness: Callable[[List], Any], broadcast: Broadcast):
        self.fitness = fitness
        self.broadcast = broadcast

    def __call__(self, archs: List) -> Any:
        self.broadcast({"op": "evaluate", "archs": archs})
        return self.fitness(archs)


def serve_fitness(fitness: Callable[[List], Any], broadcast: Broadcast) -> None:
    """Other ranks: score whatever the main rank broadcasts until it says stop."""
    while True:
        message = broadcast(None)
        if message["op"] == "stop":
            return
        fitness(message["archs"])


def run_on_every_rank(runner, resume: bool = False, *, is_main: bool = True, broadcast: Broadcast | None = None):
    """Run ``runner`` (a :class:`~detnas_d2.search.runner.SearchRunner`, built the same way on every rank) as one
    search: the main rank drives it and returns its result; the other ranks serve its fitness and return ``None``.
    In a single process leave ``broadcast=None``."""
    if not is_main and broadcast is None:
        raise ValueError("is_main=False needs a broadcast callable to receive the candidates from the main rank")
    if broadcast is None:
        return runner.run(resume=resume)
    if not is_main:
        serve_fitness(runner.fitness, broadcast)
        return None
    runner.fitness = BroadcastFitness(runner.fitness, broadcast)
    try:
        return runner.run(resume=resume)
    finally:
        broadcast(STOP)
