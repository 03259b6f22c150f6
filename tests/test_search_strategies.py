"""Tests of the search strategies (evolution / random), RNG serialisation and the SEARCH config.

Also defines the toy search space, cost and evaluator shared with test_search_engine.py.
"""

import json
import random
import re
from collections import Counter

import pytest
from detectron2.config import get_cfg

from detnas_d2.search.build import STRATEGY_REGISTRY, build_search_strategy
from detnas_d2.search.config import add_search_config, validate_search_config
from detnas_d2.search.constraints import CostConstraints
from detnas_d2.search.runner import SearchRunner
from detnas_d2.search.state import rng_state_from_json, rng_state_to_json
from detnas_d2.search.strategies import (
    CandidateSearchExhausted,
    EvolutionStrategy,
    RandomSearchStrategy,
)
from detnas_d2.space.backbone import BackboneSearchSpace
from detnas_d2.space.base import SearchSpace

NUM_GENES = 20
NUM_CHOICES = 4
#: per-choice cost of one gene: the toy "FLOPs" range from 20e6 (all 0) to 60e6 (all 3)
GENE_COST = (1.0e6, 1.5e6, 2.0e6, 3.0e6)
#: optimum of the toy fitness; its toy FLOPs are 37.5e6
TARGET = (0, 1, 2, 3) * 5


class ToySpace(SearchSpace):
    """``num_genes`` genes with ``num_choices`` values each, like the DetNAS small space."""

    name = "toy"

    def __init__(self, num_genes=NUM_GENES, num_choices=NUM_CHOICES):
        self.num_genes = num_genes
        self.num_choices = num_choices

    def sample(self, rng):
        return [rng.randrange(self.num_choices) for _ in range(self.num_genes)]

    def mutate(self, arch, rng, prob):
        return [rng.randrange(self.num_choices) if rng.random() < prob else gene for gene in arch]

    def crossover(self, a, b, rng):
        return [x if rng.random() < 0.5 else y for x, y in zip(a, b)]

    def validate(self, arch):
        if len(arch) != self.num_genes or not all(isinstance(g, int) and 0 <= g < self.num_choices for g in arch):
            raise ValueError(f"toy arch must be {self.num_genes} ints in [0, {self.num_choices}), got {arch!r}")
        return list(arch)


def toy_flops(arch):
    """Toy cost: sum of per-gene costs."""
    return sum(GENE_COST[gene] for gene in arch)


def toy_cost_range(name):
    """Exact range of the toy costs, as a cost model would provide it."""
    if name == "flops":
        return (NUM_GENES * min(GENE_COST), NUM_GENES * max(GENE_COST))
    return None


class SimulatedKill(Exception):
    """Stands for a crash / preemption of the search process."""


class CountingEvaluator:
    """Fitness = number of genes equal to ``TARGET`` (nested like COCOEvaluator output); counts every evaluation."""

    def __init__(self, space, target=TARGET, kill_after=None):
        self.space = space
        self.target = target
        self.kill_after = kill_after
        self.counts = Counter()
        self.batches = []

    def __call__(self, archs):
        self.batches.append([list(a) for a in archs])
        results = []
        for arch in archs:
            if self.kill_after is not None and sum(self.counts.values()) >= self.kill_after:
                raise SimulatedKill(f"killed after {self.kill_after} evaluations")
            self.counts[self.space.encode(arch)] += 1
            matches = sum(int(a == t) for a, t in zip(arch, self.target))
            results.append({"bbox": {"AP": float(matches), "AP50": 2.0 * matches}})
        return results


def make_evolution(space, seed=0, **overrides):
    """A small evolution strategy (population 20, 8 generations) for fast tests."""
    args = dict(
        population=20,
        generations=8,
        topk=5,
        num_mutation=8,
        num_crossover=8,
        mutation_prob=0.1,
        seed=seed,
        max_tries_factor=10,
        max_random_tries=1000,
    )
    args.update(overrides)
    return EvolutionStrategy(space, **args)


def run_in_memory(strategy, flops_limit=40e6):
    """Run a full search without files; returns (result, evaluator)."""
    evaluator = CountingEvaluator(strategy.space)
    engine = SearchRunner(
        strategy.space,
        strategy,
        evaluator,
        metric="bbox/AP",
        constraints=CostConstraints({"flops": toy_flops}, {"flops": flops_limit}),
    )
    return engine.run(), evaluator


def test_evolution_beats_random_search_with_the_same_budget():
    space = ToySpace()
    assert toy_flops(TARGET) <= 40e6  # the optimum is legal
    evolution_best, random_best = [], []
    for seed in range(5):
        evo_result, evo_eval = run_in_memory(make_evolution(space, seed=seed))
        rnd_result, rnd_eval = run_in_memory(
            RandomSearchStrategy(space, population=20, generations=8, topk=5, seed=seed, max_random_tries=1000)
        )
        # same budget: 160 candidate slots each, each candidate evaluated once
        assert sum(rnd_eval.counts.values()) == 160
        assert 0 < sum(evo_eval.counts.values()) <= 160
        evolution_best.append(evo_result.best.fitness)
        random_best.append(rnd_result.best.fitness)
    assert all(e > r for e, r in zip(evolution_best, random_best)), (evolution_best, random_best)
    assert sum(evolution_best) / 5 >= sum(random_best) / 5 + 3.0, (evolution_best, random_best)


def _evaluated_marker(evaluated):
    """is_legal that rejects architectures in ``evaluated`` and records every call."""
    calls = []

    def is_legal(arch):
        calls.append(list(arch))
        return json.dumps(arch, separators=(",", ":")) not in evaluated

    return is_legal, calls


def test_generation_composition_mutation_crossover_random_fill():
    space = ToySpace()
    # prob 0 and top-1: every mutation / crossover child is a copy of the single parent
    strategy = make_evolution(space, population=10, num_mutation=4, num_crossover=3, topk=1, mutation_prob=0.0)
    first = strategy.propose(lambda arch: True)
    assert len(first) == 10
    keys = [space.encode(a) for a in first]
    strategy.update(keys, [float(i) for i in range(10)])
    parent = first[9]
    assert strategy.topk == [(keys[9], 9.0)]
    second = strategy.propose(lambda arch: True)
    assert len(second) == 10
    assert second[:7] == [parent] * 7  # 4 mutation + 3 crossover children, no within-generation de-dup
    assert all(child != parent for child in second[7:])  # 3 random fill


def test_operator_tries_are_bounded_and_shortfall_is_random_filled():
    space = ToySpace()
    strategy = make_evolution(space, population=10, num_mutation=4, num_crossover=3, topk=1, mutation_prob=0.0)
    first = strategy.propose(lambda arch: True)
    keys = [space.encode(a) for a in first]
    strategy.update(keys, [float(i) for i in range(10)])
    is_legal, calls = _evaluated_marker(set(keys))
    second = strategy.propose(is_legal)
    # every mutation / crossover child repeats the evaluated parent -> 10x quota tries, all rejected
    assert calls[: 10 * 7] == [first[9]] * 70
    assert len(second) == 10
    assert all(space.encode(child) not in keys for child in second)
    assert len(calls) == 70 + 10  # the 10 random draws (4^20 space) are all new


def test_random_fill_raises_when_no_legal_candidate_exists():
    strategy = make_evolution(ToySpace(), max_random_tries=50)
    calls = []
    with pytest.raises(CandidateSearchExhausted, match="no legal candidate in 50 consecutive random draws"):
        strategy.propose(lambda arch: calls.append(arch) and False)
    assert len(calls) == 50


def test_topk_is_elitist_sorted_distinct_and_stable():
    strategy = make_evolution(ToySpace(), topk=3)
    strategy.update(["a", "b", "c", "b"], [1.0, 5.0, None, 5.0])
    assert strategy.topk == [("b", 5.0), ("a", 1.0), ("c", None)]
    assert strategy.generation == 1
    # old top-k first: on a tie the older entry stays ahead; None ranks below any number
    strategy.update(["d", "e", "f"], [5.0, 0.5, 2.0])
    assert strategy.topk == [("b", 5.0), ("d", 5.0), ("f", 2.0)]
    with pytest.raises(ValueError, match="2 keys but 1 fitness"):
        strategy.update(["x", "y"], [1.0])


def test_rng_state_json_roundtrip_including_gauss_state():
    rng = random.Random(7)
    rng.gauss(0.0, 1.0)  # leaves a cached second gaussian in the state
    data = json.loads(json.dumps(rng_state_to_json(rng)))
    assert data[2] is not None
    restored = random.Random(0)
    rng_state_from_json(restored, data)
    assert [restored.gauss(0.0, 1.0) for _ in range(3)] == [rng.gauss(0.0, 1.0) for _ in range(3)]
    assert restored.random() == rng.random()
    with pytest.raises(ValueError, match="invalid random.Random state"):
        rng_state_from_json(restored, [3, 5])


def _advance(strategy, generations):
    """Run ``generations`` propose/update rounds with the toy fitness, everything legal."""
    space = strategy.space
    for _ in range(generations):
        archs = strategy.propose(lambda arch: True)
        strategy.update([space.encode(a) for a in archs], [float(sum(a)) for a in archs])


def test_state_dict_roundtrip_continues_identically():
    space = ToySpace()
    original = make_evolution(space, seed=3)
    _advance(original, 2)
    copy = make_evolution(space, seed=99)
    copy.load_state_dict(json.loads(json.dumps(original.state_dict())))
    assert copy.state_dict() == original.state_dict()
    assert copy.propose(lambda a: True) == original.propose(lambda a: True)
    with pytest.raises(ValueError, match="state of strategy 'evolution' cannot be loaded into strategy 'random'"):
        RandomSearchStrategy(space, population=4, generations=2, topk=2, seed=0, max_random_tries=5).load_state_dict(
            original.state_dict()
        )


def test_same_seed_same_trajectory_different_seed_different():
    space = ToySpace()
    a, b, c = make_evolution(space, seed=1), make_evolution(space, seed=1), make_evolution(space, seed=2)
    for strategy in (a, b, c):
        _advance(strategy, 3)
    assert a.state_dict() == b.state_dict()
    assert a.topk != c.topk
    assert a.propose(lambda x: True) == b.propose(lambda x: True) != c.propose(lambda x: True)


def test_strategy_argument_errors():
    space = ToySpace()
    with pytest.raises(ValueError, match=r"num_mutation \+ num_crossover \(8 \+ 8\) must not exceed population \(10\)"):
        make_evolution(space, population=10)
    with pytest.raises(ValueError, match="mutation_prob must be in"):
        make_evolution(space, mutation_prob=1.5)
    with pytest.raises(ValueError, match="population must be an integer >= 1, got 0"):
        RandomSearchStrategy(space, population=0, generations=2, topk=2, seed=0, max_random_tries=5)


def _search_cfg(**overrides):
    cfg = get_cfg()
    add_search_config(cfg)
    for key, value in overrides.items():
        node = cfg.SEARCH
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return cfg


def test_add_search_config_defaults_and_idempotence():
    cfg = _search_cfg()
    s = cfg.SEARCH
    assert (s.STRATEGY, s.POPULATION, s.GENERATIONS, s.TOPK) == ("evolution", 50, 20, 10)
    assert (s.NUM_MUTATION, s.NUM_CROSSOVER, s.MUTATION_PROB, s.SEED) == (20, 20, 0.1, 0)
    assert (s.FLOPS_LIMIT, s.FLOPS_MODE, s.PARAMS_LIMIT, s.METRIC) == (300e6, "backbone", 0, "bbox/AP")
    assert (s.MAX_TRIES_FACTOR, s.EVAL_BATCH_SIZE, s.SPACE, s.DATASET) == (10, 1, "backbone", "")
    assert (s.BN_RECALIB.NUM_BATCHES, s.BN_RECALIB.BATCH_SIZE, s.BN_RECALIB.MODE) == (500, 8, "cumulative")
    s.POPULATION = 60
    add_search_config(cfg)  # second call keeps values and does not fail
    assert s.POPULATION == 60
    validate_search_config(cfg)
    strategy = build_search_strategy(cfg, ToySpace())
    assert isinstance(strategy, EvolutionStrategy) and strategy.population == 60 and strategy.num_mutation == 20
    cfg.SEARCH.STRATEGY = "random"
    assert isinstance(build_search_strategy(cfg, ToySpace()), RandomSearchStrategy)


@pytest.mark.parametrize(
    "key, value, message",
    [
        (
            "STRATEGY",
            "annealing",
            "SEARCH.STRATEGY = 'annealing' is invalid: must be one of ('evolution', 'nsga2', 'random', 'controller')",
        ),
        ("POPULATION", 0, "SEARCH.POPULATION = 0 is invalid: must be an integer >= 1"),
        ("NUM_MUTATION", 40, "NUM_MUTATION + NUM_CROSSOVER (40 + 20) must not exceed POPULATION (50)"),
        ("MUTATION_PROB", 1.5, "SEARCH.MUTATION_PROB = 1.5 is invalid: must be a number in [0, 1]"),
        ("FLOPS_LIMIT", -1.0, "SEARCH.FLOPS_LIMIT = -1.0 is invalid: must be a number >= 0 (0 = no limit)"),
        ("FLOPS_MODE", "full", "SEARCH.FLOPS_MODE = 'full' is invalid: must be one of ('backbone', 'detector')"),
        ("DETECTOR_INPUT_SIZE", (800,), "SEARCH.DETECTOR_INPUT_SIZE = (800,) is invalid"),
        ("METRIC", "", "SEARCH.METRIC = '' is invalid"),
        ("SPACE", "head", "SEARCH.SPACE = 'head' is invalid"),
        ("BN_RECALIB.MODE", "median", "SEARCH.BN_RECALIB.MODE = 'median' is invalid"),
        ("BN_RECALIB.MOMENTUM", 0.0, "SEARCH.BN_RECALIB.MOMENTUM = 0.0 is invalid: must be a number in (0, 1]"),
    ],
)
def test_validate_search_config_names_the_bad_key(key, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_search_config(_search_cfg(**{key: value}))


def test_every_registered_strategy_is_accepted_and_built_from_the_config():
    for name, _ in STRATEGY_REGISTRY:
        cfg = _search_cfg(STRATEGY=name)
        validate_search_config(cfg)
        strategy = build_search_strategy(cfg, BackboneSearchSpace())  # the controller needs a tokenized space
        assert strategy.name == name and strategy.population == cfg.SEARCH.POPULATION
