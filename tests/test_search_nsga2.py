"""Tests of the NSGA-II strategy: Pareto helpers, the true front of a toy problem, resume, files, config, export."""

import itertools
import json
import os
import random
from types import SimpleNamespace

import pytest
from matplotlib.image import imread

from detnas_d2.cli.defaults import parse_command_line
from detnas_d2.cli.search import build_parser, with_export_rank
from detnas_d2.search.build import build_search_strategy
from detnas_d2.search.config import validate_search_config
from detnas_d2.search.constraints import CostConstraints
from detnas_d2.search.hooks import FRONT_FILE, FRONT_PLOT_FILE
from detnas_d2.search.launcher import export_choice
from detnas_d2.search.pareto import crowding_distances, dominates, non_dominated_fronts, select_survivors
from detnas_d2.search.runner import SearchRunner
from detnas_d2.search.store import STATE_FILE
from detnas_d2.search.strategies import NSGA2Strategy
from tests.test_search_strategies import SimulatedKill, ToySpace, _search_cfg

NUM_GENES, NUM_CHOICES = 5, 4
_tables = random.Random(7)
#: per gene and choice: (fitness gain, cost); the toy problem is additive, so its front is found by enumeration
GAIN = [[_tables.randint(0, 1000) for _ in range(NUM_CHOICES)] for _ in range(NUM_GENES)]
COST = [[_tables.randint(1, 1000) for _ in range(NUM_CHOICES)] for _ in range(NUM_GENES)]


def toy_fitness(arch):
    return float(sum(GAIN[i][g] for i, g in enumerate(arch)))


def toy_cost(arch):
    return float(sum(COST[i][g] for i, g in enumerate(arch)))


class ToyEvaluator:
    """Fitness = ``toy_fitness``; records every evaluated arch; can simulate a kill after ``kill_after`` ones."""

    def __init__(self, kill_after=None):
        self.kill_after = kill_after
        self.evaluated = []

    def __call__(self, archs):
        if self.kill_after is not None and len(self.evaluated) + len(archs) > self.kill_after:
            raise SimulatedKill(f"killed after {self.kill_after} evaluations")
        self.evaluated += [list(a) for a in archs]
        return [{"bbox": {"AP": toy_fitness(a)}} for a in archs]


def true_front():
    """Keys of the non-dominated architectures of the whole toy space, by enumeration."""
    space = ToySpace(NUM_GENES, NUM_CHOICES)
    archs = [list(a) for a in itertools.product(range(NUM_CHOICES), repeat=NUM_GENES)]
    points = [(toy_fitness(a), toy_cost(a)) for a in archs]
    return {space.encode(archs[i]) for i in non_dominated_fronts(points)[0]}


def make_engine(output_dir=None, evaluator=None, seed=0, generations=12, cost_limit=0.0, **kwargs):
    """NSGA-II on the toy space: population 24, 8 mutation + 8 crossover children per generation."""
    space = ToySpace(NUM_GENES, NUM_CHOICES)
    strategy = NSGA2Strategy(
        space,
        objective_cost="latency",
        population=24,
        generations=generations,
        topk=4,
        num_mutation=8,
        num_crossover=8,
        mutation_prob=0.2,
        seed=seed,
        max_tries_factor=10,
        max_random_tries=1000,
    )
    constraints = CostConstraints({"latency": toy_cost}, {"latency": cost_limit})  # any cost name works
    return SearchRunner(
        space,
        strategy,
        evaluator or ToyEvaluator(),
        metric="bbox/AP",
        constraints=constraints,
        output_dir=output_dir,
        plot_each_generation=False,
        **kwargs,
    )


def test_dominance_fronts_crowding_and_survival_on_hand_points():
    points = [(3.0, 3.0), (1.0, 1.0), (2.0, 2.0), (1.0, 2.0), (None, 0.5), (2.0, 3.0), (3.0, 3.0)]
    assert dominates((2.0, 1.0), (1.0, 1.0)) and not dominates((1.0, 1.0), (1.0, 1.0))
    assert dominates((0.0, 1.0), (None, 1.0))  # a non-finite fitness is worse than any number
    assert non_dominated_fronts(points) == [[0, 1, 2, 4, 6], [3, 5]]
    # ends of either objective get infinity; the middle one the normalised gap of its neighbours, summed over both
    distances = crowding_distances([(1.0, 1.0), (2.0, 2.0), (4.0, 3.5)], [0, 1, 2])
    assert distances[0] == distances[2] == float("inf") and distances[1] == pytest.approx((4 - 1) / 3 + (3.5 - 1) / 2.5)
    assert select_survivors(points, 6) == [0, 1, 2, 4, 6, 3]
    # the last front is cut by crowding: (3.8, 3.4) sits closer to its neighbours than (2, 2)
    assert select_survivors([(1.0, 1.0), (2.0, 2.0), (3.8, 3.4), (4.0, 3.5)], 3) == [0, 3, 1]


def test_final_front_equals_the_true_front_of_the_toy_problem():
    expected = true_front()
    assert 1 < len(expected) < 24  # the whole true front fits in the population
    evaluator = ToyEvaluator()
    result = make_engine(evaluator=evaluator).run()
    assert {c.key for c in result.front} == expected
    assert len(evaluator.evaluated) < NUM_CHOICES**NUM_GENES / 3  # found without enumerating the space
    costs = [c.costs["latency"] for c in result.front]
    assert costs == sorted(costs)
    assert [c.fitness for c in result.front] == sorted(c.fitness for c in result.front)  # a front: both rise


def test_cost_limit_still_applies_and_the_front_lies_on_the_constrained_one():
    limit = 2000.0  # 395 of the 1024 architectures are legal
    evaluator = ToyEvaluator()
    result = make_engine(evaluator=evaluator, cost_limit=limit, generations=8).run()
    assert max(toy_cost(a) for a in evaluator.evaluated) <= limit
    space = ToySpace(NUM_GENES, NUM_CHOICES)
    legal = [list(a) for a in itertools.product(range(NUM_CHOICES), repeat=NUM_GENES) if toy_cost(list(a)) <= limit]
    fronts = non_dominated_fronts([(toy_fitness(a), toy_cost(a)) for a in legal])
    assert {c.key for c in result.front} <= {space.encode(legal[i]) for i in fronts[0]}


def read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted 6-generation search: (output_dir, result)."""
    output_dir = tmp_path_factory.mktemp("nsga2_reference")
    return output_dir, make_engine(str(output_dir), generations=6).run()


@pytest.mark.parametrize("kill_after", [0, 5, 24, 61, 130])  # 24: first candidate of generation 2
def test_resume_after_kill_equals_the_uninterrupted_search(tmp_path, reference_run, kill_after):
    reference_dir, reference = reference_run
    resumed_dir = tmp_path
    with pytest.raises(SimulatedKill):
        make_engine(str(resumed_dir), ToyEvaluator(kill_after=kill_after), generations=6).run()
    second = ToyEvaluator()
    assert make_engine(str(resumed_dir), second, generations=6).run(resume=True) == reference
    for name in (STATE_FILE, FRONT_FILE):
        assert read(resumed_dir / name) == read(reference_dir / name)
    assert len(second.evaluated) == reference.n_evaluated - kill_after  # nothing is evaluated twice


def test_lost_state_is_rebuilt_from_the_log_with_the_same_front(tmp_path, reference_run):
    reference_dir, reference = reference_run
    with pytest.raises(SimulatedKill):
        make_engine(str(tmp_path), ToyEvaluator(kill_after=40), generations=6).run()
    os.remove(tmp_path / STATE_FILE)
    assert make_engine(str(tmp_path), generations=6).run(resume=True) == reference
    assert read(tmp_path / FRONT_FILE) == read(reference_dir / FRONT_FILE)


def test_front_files_and_export_of_a_finished_search_without_evaluating(tmp_path):
    result = make_engine(str(tmp_path)).run()
    saved = json.loads(read(tmp_path / FRONT_FILE))
    assert saved["metric"] == "bbox/AP" and saved["cost"] == "latency"
    assert [m["key"] for m in saved["front"]] == [c.key for c in result.front]
    assert [m["rank"] for m in saved["front"]] == list(range(len(result.front)))
    assert all(m["cost"] == m["costs"]["latency"] for m in saved["front"])
    assert imread(str(tmp_path / FRONT_PLOT_FILE)).shape[2] in (3, 4)
    again = ToyEvaluator()
    resumed = make_engine(str(tmp_path), again).run(resume=True)
    assert not again.evaluated and resumed == result
    cfg = SimpleNamespace(SEARCH=SimpleNamespace(EXPORT_RANK=2))
    assert export_choice(cfg, resumed) == result.front[2]
    cfg.SEARCH.EXPORT_RANK = -1
    assert export_choice(cfg, resumed) == result.best
    cfg.SEARCH.EXPORT_RANK = len(result.front)
    with pytest.raises(ValueError, match=rf"SEARCH.EXPORT_RANK = {len(result.front)} .* 0\.\.{len(result.front) - 1}"):
        export_choice(cfg, resumed)


def test_config_builds_nsga2_and_errors_name_the_key():
    cfg = _search_cfg(STRATEGY="nsga2", OBJECTIVE_COST="params", EXPORT_RANK=3)
    validate_search_config(cfg)
    strategy = build_search_strategy(cfg, ToySpace())
    assert isinstance(strategy, NSGA2Strategy) and strategy.settings()["SEARCH.OBJECTIVE_COST"] == "params"
    with pytest.raises(ValueError, match=r"SEARCH.OBJECTIVE_COST = 'params' is invalid: .*\['flops'\]"):
        SearchRunner(
            ToySpace(), strategy, ToyEvaluator(), metric="bbox/AP", constraints=CostConstraints({"flops": toy_cost})
        )
    with pytest.raises(ValueError, match=r"SEARCH.EXPORT_RANK = 0 is invalid: needs SEARCH.STRATEGY 'nsga2'"):
        validate_search_config(_search_cfg(EXPORT_RANK=0))
    with pytest.raises(ValueError, match=r"SEARCH.EXPORT_RANK = -2 is invalid"):
        validate_search_config(_search_cfg(STRATEGY="nsga2", EXPORT_RANK=-2))
    with pytest.raises(ValueError, match=r"SEARCH.OBJECTIVE_COST = '' is invalid"):
        validate_search_config(_search_cfg(STRATEGY="nsga2", OBJECTIVE_COST=""))


def test_export_rank_option_becomes_the_config_override():
    argv = ["--config-file", "search.yaml", "OUTPUT_DIR", "out", "--resume", "--export-rank", "2"]
    args = with_export_rank(parse_command_line(build_parser(), argv))
    assert args.resume and args.opts == ["OUTPUT_DIR", "out", "SEARCH.EXPORT_RANK", "2"]
    assert with_export_rank(parse_command_line(build_parser(), argv[:4])).opts == ["OUTPUT_DIR", "out"]
