"""Search strategies: the DetNAS/SPOS evolutionary algorithm (megvii-model/DetNAS, SinglePathOneShot), its
multi-objective NSGA-II variant and a same-budget random search (the PPO-trained RNN controller is in
``controller.py``).

A strategy only decides WHICH architectures to evaluate; the runner (``runner.py``) evaluates them,
owns the memo and the files. The interaction is ask/tell, one generation at a time::

    archs = strategy.propose(is_legal)   # is_legal(arch): within cost limits and not evaluated earlier
    ...evaluate...
    strategy.update(keys, fitnesses, costs)  # merge into the elitist top-k (NSGA-II: the front), next generation

All randomness comes from the strategy's own ``random.Random(seed)``, whose state is part of
``state_dict()`` (plain JSON), so a search is reproducible and resumable.
"""

import logging
import random
import time
from typing import Any, Callable, List, Mapping, Sequence, Tuple

from ..space.base import SearchSpace
from .pareto import rank_and_crowding, select_survivors
from .state import rng_state_from_json, rng_state_to_json

logger = logging.getLogger("detnas_d2.search")

#: seconds between two progress lines while random legal candidates are sought
PROGRESS_PERIOD_S = 10.0

IsLegal = Callable[[Any], bool]
TopKEntry = Tuple[str, float | None]


class CandidateSearchExhausted(RuntimeError):
    """Random sampling drew ``tries`` architectures in a row without finding a legal one."""

    def __init__(self, tries: int, found: int, wanted: int):
        super().__init__(f"no legal candidate in {tries} consecutive random draws ({found} of {wanted} found)")
        self.tries = tries
        self.found = found
        self.wanted = wanted


def fitness_sort_key(fitness: float | None) -> float:
    """Sort key making higher fitness better; ``None`` (non-finite metric) ranks below everything."""
    return float("-inf") if fitness is None else fitness


def _check_int(name: str, value: int, minimum: int) -> None:
    """Raise ValueError unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


class SearchStrategy:
    """Common part of the strategies: generation counter, elitist top-k, seeded RNG, random sampling.

    Args:
        space: the search space the architectures come from.
        population: candidates per generation (generation 0 is that many random legal architectures).
        generations: number of generations, the random one included.
        topk: size of the elitist archive that parents are drawn from.
        seed: seed of the strategy's ``random.Random`` (the search is deterministic given it).
        max_random_tries: random draws allowed to find one legal candidate before
            :class:`CandidateSearchExhausted` is raised.
    """

    #: value of SEARCH.STRATEGY selecting this class
    name = ""

    def __init__(
        self,
        space: SearchSpace,
        *,
        population: int,
        generations: int,
        topk: int,
        seed: int,
        max_random_tries: int,
    ):
        for arg, value, minimum in (
            ("population", population, 1),
            ("generations", generations, 1),
            ("topk", topk, 1),
            ("seed", seed, 0),
            ("max_random_tries", max_random_tries, 1),
        ):
            _check_int(arg, value, minimum)
        self.space = space
        self.population = population
        self.generations = generations
        self.topk_size = topk
        self.seed = seed
        self.max_random_tries = max_random_tries
        self.rng = random.Random(seed)
        #: number of completed generations
        self.generation = 0
        #: elitist archive of (key, fitness), best first, distinct keys
        self.topk: List[TopKEntry] = []

    @property
    def finished(self) -> bool:
        """Whether all generations have been proposed and updated."""
        return self.generation >= self.generations

    def propose(self, is_legal: IsLegal) -> list:
        """The architectures of the next generation, each one accepted by ``is_legal``."""
        raise NotImplementedError

    def front(self) -> List[str]:
        """Keys of the current Pareto front sorted by cost (multi-objective strategies only; else empty)."""
        return []

    def check_costs(self, cost_names: Sequence[str]) -> None:
        """Raise ValueError if the strategy needs a cost the search does not compute."""

    def update(
        self,
        keys: Sequence[str],
        fitnesses: Sequence[float | None],
        costs: Sequence[Mapping[str, float]] | None = None,
    ) -> None:
        """Merge the evaluated generation into the top-k (old top-k first, stable sort) and advance.

        ``costs`` (one dict per key) is used by multi-objective strategies only."""
        if len(keys) != len(fitnesses):
            raise ValueError(f"update got {len(keys)} keys but {len(fitnesses)} fitness values")
        merged, seen = [], set()
        for key, fitness in list(self.topk) + list(zip(keys, fitnesses)):
            if key not in seen:
                seen.add(key)
                merged.append((key, fitness))
        merged.sort(key=lambda entry: fitness_sort_key(entry[1]), reverse=True)
        self.topk = merged[: self.topk_size]
        self.generation += 1

    def settings(self) -> dict:
        """The hyper-parameters that determine the trajectory, by config key (for the resume check)."""
        return {
            "SEARCH.STRATEGY": self.name,
            "SEARCH.POPULATION": self.population,
            "SEARCH.GENERATIONS": self.generations,
            "SEARCH.TOPK": self.topk_size,
            "SEARCH.SEED": self.seed,
            "SEARCH.MAX_RANDOM_TRIES": self.max_random_tries,
        }

    def state_dict(self) -> dict:
        """Everything needed to continue the strategy exactly, as plain JSON data."""
        return {
            "strategy": self.name,
            "generation": self.generation,
            "rng": rng_state_to_json(self.rng),
            "topk": [[key, fitness] for key, fitness in self.topk],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a state produced by :meth:`state_dict` of the same strategy."""
        if state.get("strategy") != self.name:
            raise ValueError(
                f"state of strategy {state.get('strategy')!r} cannot be loaded into strategy {self.name!r}"
            )
        self.generation = int(state["generation"])
        rng_state_from_json(self.rng, state["rng"])
        self.topk = [(key, fitness) for key, fitness in state["topk"]]

    def _random_legal(self, count: int, is_legal: IsLegal) -> list:
        """``count`` uniform random legal architectures; each may take up to ``max_random_tries`` draws."""
        found, draws, next_report = [], 0, time.monotonic() + PROGRESS_PERIOD_S
        while len(found) < count:
            for _ in range(self.max_random_tries):
                arch = self.space.sample(self.rng)
                draws += 1
                if time.monotonic() > next_report:
                    logger.info(
                        "Seeking random legal candidates: %d of %d found in %d draws (at most %d draws "
                        "per candidate, SEARCH.MAX_RANDOM_TRIES)",
                        len(found),
                        count,
                        draws,
                        self.max_random_tries,
                    )
                    next_report = time.monotonic() + PROGRESS_PERIOD_S
                if is_legal(arch):
                    found.append(arch)
                    break
            else:
                raise CandidateSearchExhausted(self.max_random_tries, len(found), count)
        return found


class EvolutionStrategy(SearchStrategy):
    """DetNAS/SPOS evolution: random generation 0, then mutation + crossover children of the top-k plus random fill.

    Args:
        space: the search space the architectures come from.
        population: candidates per generation (generation 0 is that many random legal architectures).
        generations: number of generations, the random one included.
        topk: size of the elitist archive that parents are drawn from.
        seed: seed of the strategy's ``random.Random`` (the search is deterministic given it).
        max_random_tries: random draws allowed to find one legal candidate before
            :class:`CandidateSearchExhausted` is raised.
        num_mutation: mutation children per generation.
        num_crossover: crossover children per generation (the rest of ``population`` is random fill).
        mutation_prob: probability that mutation redraws each gene.
        max_tries_factor: mutation and crossover each get at most this many times their quota of tries.
    """

    name = "evolution"

    def __init__(
        self,
        space: SearchSpace,
        *,
        population: int,
        generations: int,
        topk: int,
        num_mutation: int,
        num_crossover: int,
        mutation_prob: float,
        seed: int,
        max_tries_factor: int,
        max_random_tries: int,
    ):
        super().__init__(
            space,
            population=population,
            generations=generations,
            topk=topk,
            seed=seed,
            max_random_tries=max_random_tries,
        )
        _check_int("num_mutation", num_mutation, 0)
        _check_int("num_crossover", num_crossover, 0)
        _check_int("max_tries_factor", max_tries_factor, 1)
        if num_mutation + num_crossover > population:
            raise ValueError(
                f"num_mutation + num_crossover ({num_mutation} + {num_crossover}) "
                f"must not exceed population ({population})"
            )
        if not 0.0 <= mutation_prob <= 1.0:
            raise ValueError(f"mutation_prob must be in [0, 1], got {mutation_prob!r}")
        self.num_mutation = num_mutation
        self.num_crossover = num_crossover
        self.mutation_prob = mutation_prob
        self.max_tries_factor = max_tries_factor

    def settings(self) -> dict:
        return {
            **super().settings(),
            "SEARCH.NUM_MUTATION": self.num_mutation,
            "SEARCH.NUM_CROSSOVER": self.num_crossover,
            "SEARCH.MUTATION_PROB": self.mutation_prob,
            "SEARCH.MAX_TRIES_FACTOR": self.max_tries_factor,
        }

    def propose(self, is_legal: IsLegal) -> list:
        if self.generation == 0:
            return self._random_legal(self.population, is_legal)
        parents = self._parent_pool()
        mutation = self._operator_children(
            self.num_mutation,
            lambda: self.space.mutate(self._choose_parent(parents), self.rng, self.mutation_prob),
            is_legal,
        )
        crossover = self._operator_children(
            self.num_crossover,
            lambda: self.space.crossover(self._choose_parent(parents), self._choose_parent(parents), self.rng),
            is_legal,
        )
        fill = self._random_legal(self.population - len(mutation) - len(crossover), is_legal)
        logger.info(
            "Generation %d/%d proposal: %d mutation (quota %d), %d crossover (quota %d), %d random",
            self.generation + 1,
            self.generations,
            len(mutation),
            self.num_mutation,
            len(crossover),
            self.num_crossover,
            len(fill),
        )
        return mutation + crossover + fill

    def _parent_pool(self) -> list:
        """What parents are chosen from: the top-k architectures."""
        return [self.space.decode(key) for key, _ in self.topk]

    def _choose_parent(self, pool: list) -> Any:
        """One parent architecture: uniform over the top-k."""
        return self.rng.choice(pool)

    def _operator_children(self, quota: int, make_child: Callable[[], Any], is_legal: IsLegal) -> list:
        """Up to ``quota`` legal children from ``max_tries_factor * quota`` tries (every try counts, as in SPOS)."""
        children = []
        for _ in range(self.max_tries_factor * quota):
            if len(children) == quota:
                break
            child = make_child()
            if is_legal(child):
                children.append(child)
        return children


class RandomSearchStrategy(SearchStrategy):
    """Baseline: every generation is POPULATION uniform random legal architectures (same budget as evolution)."""

    name = "random"

    def propose(self, is_legal: IsLegal) -> list:
        return self._random_legal(self.population, is_legal)


class NSGA2Strategy(EvolutionStrategy):
    """NSGA-II over fitness (maximised) and one cost (minimised): evolution's operators, binary-tournament parents
    by (front, crowding distance), and elitist survival of POPULATION candidates from parents + children.

    Args:
        space: the search space the architectures come from.
        objective_cost: name of the cost minimised beside the fitness (e.g. "flops" or "params").
        **kwargs: the arguments of :class:`EvolutionStrategy`.
    """

    name = "nsga2"

    def __init__(self, space: SearchSpace, *, objective_cost: str, **kwargs):
        super().__init__(space, **kwargs)
        if not isinstance(objective_cost, str) or not objective_cost:
            raise ValueError(f"objective_cost must be a non-empty cost name such as 'flops', got {objective_cost!r}")
        self.objective_cost = objective_cost
        #: surviving population as (key, fitness, cost), in selection order
        self.parents: List[Tuple[str, float | None, float]] = []
        #: keys of the Pareto front after each generation, sorted by cost
        self.fronts: List[List[str]] = []

    def settings(self) -> dict:
        return {**super().settings(), "SEARCH.OBJECTIVE_COST": self.objective_cost}

    def check_costs(self, cost_names: Sequence[str]) -> None:
        if self.objective_cost not in cost_names:
            raise ValueError(
                f"cfg.SEARCH.OBJECTIVE_COST = {self.objective_cost!r} is invalid: must be one of the search's costs "
                f"{sorted(cost_names)}"
            )

    def state_dict(self) -> dict:
        return {**super().state_dict(), "parents": [list(p) for p in self.parents], "fronts": self.fronts}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.parents = [(key, fitness, cost) for key, fitness, cost in state["parents"]]
        self.fronts = [list(front) for front in state["fronts"]]

    def update(self, keys, fitnesses, costs=None) -> None:
        """Advance the top-k, then keep the POPULATION best of parents + this generation by NSGA-II survival."""
        if costs is None or len(costs) != len(keys):
            raise ValueError(f"{self.name} needs one costs dict per key ('{self.objective_cost}' in each)")
        super().update(keys, fitnesses)
        pool, seen = [], set()
        for key, fitness, cost in self.parents + [
            (k, f, c[self.objective_cost]) for k, f, c in zip(keys, fitnesses, costs)
        ]:
            if key not in seen:
                seen.add(key)
                pool.append((key, fitness, cost))
        survivors = select_survivors([(f, c) for _, f, c in pool], self.population)
        self.parents = [pool[i] for i in survivors]
        self.fronts.append(self.front())

    def front(self) -> List[str]:
        """Keys of the surviving population's first front, by cost (ties: higher fitness, then key)."""
        ranks = rank_and_crowding([(f, c) for _, f, c in self.parents])
        members = [p for p, (rank, _) in zip(self.parents, ranks) if rank == 0]
        members.sort(key=lambda p: (p[2], -fitness_sort_key(p[1]), p[0]))
        return [key for key, _, _ in members]

    def _parent_pool(self) -> list:
        """The surviving architectures with their crowded-comparison keys (front, crowding distance)."""
        ranks = rank_and_crowding([(f, c) for _, f, c in self.parents])
        return [(self.space.decode(key), rank, crowd) for (key, _, _), (rank, crowd) in zip(self.parents, ranks)]

    def _choose_parent(self, pool: list) -> Any:
        """Binary tournament: the better of two uniform draws (lower front, then larger crowding; tie: the first)."""
        a, b = self.rng.choice(pool), self.rng.choice(pool)
        return b[0] if (b[1], -b[2]) < (a[1], -a[2]) else a[0]
