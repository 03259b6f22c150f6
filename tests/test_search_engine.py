"""Tests of the search runner: memo, constraints, crash/resume, determinism, output files, hooks,
the distributed seam and config wiring. No model involved: toy space and toy fitness."""

import json
import logging
import os
import queue
import re
import shutil
import threading

import numpy as np
import pytest
from detectron2.config import get_cfg
from matplotlib.image import imread

import detnas_d2.search.store as store_module
import detnas_d2.search.strategies as strategies_module
from detnas_d2.search.config import add_search_config
from detnas_d2.search.constraints import CostConstraints, InfeasibleConstraintError, format_cost
from detnas_d2.search.distributed import run_on_every_rank
from detnas_d2.search.hooks import PLOT_FILE, SearchEventWriter, SearchHook
from detnas_d2.search.runner import NoFiniteFitnessError, SearchRunner
from detnas_d2.search.state import CorruptStateError
from detnas_d2.search.store import BEST_FILE, LOG_FILE, STATE_FILE, SearchExistsError
from detnas_d2.search.strategies import EvolutionStrategy
from tests.test_search_strategies import (
    CountingEvaluator,
    SimulatedKill,
    ToySpace,
    toy_cost_range,
    toy_flops,
)

LIMIT = 40e6


class GenerationCallback(SearchHook):
    """Calls ``fn(generation, stats)`` after each generation that is not replayed from the log."""

    def __init__(self, fn):
        self.fn = fn

    def after_generation(self, stats):
        if not self.runner.replaying:
            self.fn(stats["generation"], stats)


def make_engine(
    output_dir, evaluator, *, seed=0, population=10, generations=4, flops_limit=LIMIT, space=None, **kwargs
):
    """Evolution engine on the toy space: 10 x 4 = 40 candidate slots, top-4, 4 mutation + 3 crossover."""
    space = space or ToySpace()
    strategy = EvolutionStrategy(
        space,
        population=population,
        generations=generations,
        topk=4,
        num_mutation=4,
        num_crossover=3,
        mutation_prob=0.1,
        seed=seed,
        max_tries_factor=10,
        max_random_tries=kwargs.pop("max_random_tries", 1000),
    )
    kwargs.setdefault("plot_each_generation", False)
    return SearchRunner(
        space,
        strategy,
        evaluator,
        metric="bbox/AP",
        constraints=CostConstraints(
            {"flops": toy_flops}, {"flops": flops_limit}, cost_range=kwargs.pop("cost_range", toy_cost_range)
        ),
        output_dir=output_dir,
        **kwargs,
    )


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def log_entries(output_dir):
    with open(os.path.join(output_dir, LOG_FILE)) as f:
        return [json.loads(line) for line in f]


def without_timing(entries):
    return [{k: v for k, v in entry.items() if k != "eval_time_s"} for entry in entries]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted search: (output_dir, result, evaluator)."""
    output_dir = str(tmp_path_factory.mktemp("reference"))
    evaluator = CountingEvaluator(ToySpace())
    result = make_engine(output_dir, evaluator).run()
    return output_dir, result, evaluator


def test_memo_never_evaluates_twice_and_reuses_within_generation_repeats(tmp_path):
    space = ToySpace(num_genes=6, num_choices=2)  # 64 architectures: repeats are frequent
    proposals = []

    class RecordingEvolution(EvolutionStrategy):
        def propose(self, is_legal):
            archs = super().propose(is_legal)
            proposals.append([space.encode(a) for a in archs])
            return archs

    strategy = RecordingEvolution(
        space,
        population=12,
        generations=4,
        topk=3,
        num_mutation=5,
        num_crossover=5,
        mutation_prob=0.2,
        seed=0,
        max_tries_factor=10,
        max_random_tries=1000,
    )
    evaluator = CountingEvaluator(space, target=(1, 0, 1, 0, 1, 0))
    result = SearchRunner(space, strategy, evaluator, metric="bbox/AP", output_dir=str(tmp_path)).run()

    assert set(evaluator.counts.values()) == {1}
    assert result.n_evaluated == len(evaluator.counts) == len(log_entries(str(tmp_path)))
    assert [len(p) for p in proposals] == [12] * 4
    assert any(len(set(p)) < len(p) for p in proposals)  # the scenario really has within-generation repeats
    evaluated_before = set()
    for generation, keys in enumerate(proposals):
        assert not evaluated_before & set(keys), f"generation {generation} re-proposed an earlier candidate"
        evaluated_before |= set(keys)
    assert evaluated_before == set(evaluator.counts)
    assert [h["num_distinct"] for h in result.history] == [len(set(p)) for p in proposals]


def test_illegal_candidates_are_never_evaluated(reference_run):
    output_dir, result, evaluator = reference_run
    space = ToySpace()
    flops = [toy_flops(space.decode(key)) for key in evaluator.counts]
    assert len(flops) == result.n_evaluated == 39  # 40 slots, one repeat within a generation
    assert max(flops) <= LIMIT
    entries = log_entries(output_dir)
    assert [e["costs"]["flops"] for e in entries] == [toy_flops(e["arch"]) for e in entries]


def test_constraint_rejects_candidates_over_the_limit():
    calls = []

    def counting_flops(arch):
        calls.append(toy_flops(arch))
        return calls[-1]

    evaluator = CountingEvaluator(ToySpace())
    engine = make_engine(None, evaluator)
    engine.constraints = CostConstraints({"flops": counting_flops}, {"flops": LIMIT})
    engine.run()
    assert any(value > LIMIT for value in calls)  # the limit was active during sampling
    assert all(toy_flops(ToySpace().decode(key)) <= LIMIT for key in evaluator.counts)


def test_impossible_limit_fails_before_sampling_with_exact_range():
    evaluator = CountingEvaluator(ToySpace())
    with pytest.raises(InfeasibleConstraintError) as info:
        make_engine(None, evaluator, flops_limit=10e6).run()
    message = str(info.value)
    assert "flops <= 1e+07 cannot be met" in message
    assert "ranges from 2e+07 (smallest) to 6e+07 (largest)" in message
    assert not evaluator.batches


def test_impossible_limit_without_cost_range_reports_sampled_range():
    import random

    evaluator = CountingEvaluator(ToySpace())
    with pytest.raises(InfeasibleConstraintError) as info:
        make_engine(None, evaluator, flops_limit=10e6, cost_range=None, max_random_tries=200).run()
    # the strategy's RNG is random.Random(seed=0): replay its 200 draws to know the range it saw
    rng, space = random.Random(0), ToySpace()
    seen = {space.encode(a): toy_flops(a) for a in (space.sample(rng) for _ in range(200))}
    message = str(info.value)
    assert "generation 1/4: no legal candidate in 200 consecutive random draws (0 of 10 found)" in message
    assert "flops <= 1e+07" in message
    assert (
        f"flops ranges from {format_cost(min(seen.values()))} (smallest) to {format_cost(max(seen.values()))} "
        f"(largest) among {len(seen)} distinct sampled candidates (estimated from samples" in message
    )
    assert not evaluator.batches


def _kill_then_resume(tmp_path, kill):
    """Run with a simulated kill, then resume in a fresh engine; returns (result, evaluators)."""
    first = CountingEvaluator(ToySpace(), kill_after=kill.get("after"))
    callback = kill.get("callback")
    with pytest.raises(SimulatedKill):
        make_engine(str(tmp_path), first, hooks=[GenerationCallback(callback)] if callback else []).run()
    second = CountingEvaluator(ToySpace())
    result = make_engine(str(tmp_path), second).run(resume=True)
    return result, first, second


def _kill_at_generation_end(generation):
    def callback(gen, stats):
        if gen == generation:
            raise SimulatedKill(f"killed at the end of generation {gen}")

    return callback


@pytest.mark.parametrize(
    "kill",
    [
        {"after": 0},  # before the first evaluation
        {"after": 1},
        {"after": 6},  # middle of generation 0
        {"after": 10},  # first candidate of generation 1 (after its proposal was saved)
        {"after": 23},  # middle of generation 2
        {"after": 38},  # last candidate (the reference run evaluates 39)
        {"callback": _kill_at_generation_end(1)},  # between two generations, before the next proposal
    ],
    ids=["k0", "k1", "k6", "k10", "k23", "k38", "gen-boundary"],
)
def test_resume_after_kill_matches_uninterrupted_run(tmp_path, reference_run, kill):
    ref_dir, ref_result, ref_evaluator = reference_run
    result, first, second = _kill_then_resume(tmp_path, kill)
    assert result == ref_result
    assert read_bytes(tmp_path / STATE_FILE) == read_bytes(os.path.join(ref_dir, STATE_FILE))
    assert without_timing(log_entries(str(tmp_path))) == without_timing(log_entries(ref_dir))
    assert not set(first.counts) & set(second.counts)  # nothing evaluated before the kill is evaluated again
    assert first.counts + second.counts == ref_evaluator.counts
    assert json.loads(read_bytes(tmp_path / BEST_FILE)) == json.loads(read_bytes(os.path.join(ref_dir, BEST_FILE)))


def test_kill_between_log_write_and_state_save_drops_the_orphan_log_line(tmp_path, reference_run, monkeypatch):
    ref_dir, ref_result, _ = reference_run
    real_save = store_module.save_json_atomic

    def failing_save(path, obj, **kwargs):
        if path.endswith(STATE_FILE) and len(obj["evaluated"]) == 14:
            raise SimulatedKill("killed while saving the state")
        real_save(path, obj, **kwargs)

    monkeypatch.setattr(store_module, "save_json_atomic", failing_save)
    with pytest.raises(SimulatedKill):
        make_engine(str(tmp_path), CountingEvaluator(ToySpace())).run()
    assert len(log_entries(str(tmp_path))) == 14  # the 14th line was logged, its state never saved
    monkeypatch.setattr(store_module, "save_json_atomic", real_save)
    second = CountingEvaluator(ToySpace())
    result = make_engine(str(tmp_path), second).run(resume=True)
    assert result == ref_result
    assert (
        sum(second.counts.values()) == ref_result.n_evaluated - 13
    )  # the unsaved candidate is evaluated again, nothing else
    assert without_timing(log_entries(str(tmp_path))) == without_timing(log_entries(ref_dir))
    assert read_bytes(tmp_path / STATE_FILE) == read_bytes(os.path.join(ref_dir, STATE_FILE))


def test_resume_of_a_finished_search_evaluates_nothing(tmp_path, reference_run):
    _, ref_result, _ = reference_run
    make_engine(str(tmp_path), CountingEvaluator(ToySpace())).run()
    again = CountingEvaluator(ToySpace())
    assert make_engine(str(tmp_path), again).run(resume=True) == ref_result
    assert not again.batches


def test_resume_with_a_truncated_log_is_refused(tmp_path):
    with pytest.raises(SimulatedKill):
        make_engine(str(tmp_path), CountingEvaluator(ToySpace(), kill_after=5)).run()
    log_path = tmp_path / LOG_FILE
    lines = log_path.read_text().splitlines(keepends=True)
    log_path.write_text("".join(lines[:3]))
    with pytest.raises(ValueError, match="has 3 consistent lines but the search state records 5 evaluated"):
        make_engine(str(tmp_path), CountingEvaluator(ToySpace())).run(resume=True)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"seed": 1}, "SEARCH.SEED: state has 0, current run has 1"),
        ({"population": 12}, "SEARCH.POPULATION: state has 10, current run has 12"),
        ({"flops_limit": 45e6}, "limit.flops: state has 40000000.0, current run has 45000000.0"),
        ({"space": ToySpace(num_genes=12)}, None),
    ],
    ids=["seed", "population", "limit", "space"],
)
def test_resume_with_a_different_config_names_the_key(tmp_path, changes, message):
    with pytest.raises(SimulatedKill):
        make_engine(str(tmp_path), CountingEvaluator(ToySpace(), kill_after=3)).run()
    if "space" in changes:
        renamed = changes["space"]
        renamed.name = "toy12"
        message = "space: state has 'toy', current run has 'toy12'"
    with pytest.raises(ValueError, match=re.escape(message)):
        make_engine(str(tmp_path), CountingEvaluator(ToySpace()), **changes).run(resume=True)


def test_same_seed_same_state_different_seed_different_trajectory(tmp_path, reference_run):
    ref_dir, ref_result, _ = reference_run
    same = make_engine(str(tmp_path / "same"), CountingEvaluator(ToySpace())).run()
    other_evaluator = CountingEvaluator(ToySpace())
    make_engine(str(tmp_path / "other"), other_evaluator, seed=1).run()
    assert same == ref_result
    assert read_bytes(tmp_path / "same" / STATE_FILE) == read_bytes(os.path.join(ref_dir, STATE_FILE))
    assert [e["key"] for e in log_entries(str(tmp_path / "other"))] != [e["key"] for e in log_entries(ref_dir)]


def test_output_files_and_generation_callback(tmp_path):
    stats_seen = []
    evaluator = CountingEvaluator(ToySpace())
    engine = make_engine(
        str(tmp_path),
        evaluator,
        plot_each_generation=True,
        hooks=[GenerationCallback(lambda gen, stats: stats_seen.append((gen, stats)))],
    )
    result = engine.run()

    entries = log_entries(str(tmp_path))
    assert [e["index"] for e in entries] == list(range(result.n_evaluated))
    for e in entries:
        assert set(e) == {
            "arch",
            "key",
            "costs",
            "metrics",
            "fitness",
            "eval_time_s",
            "generation",
            "index",
            "settings",
        }
        assert e["metrics"] == {"bbox/AP": e["fitness"], "bbox/AP50": 2 * e["fitness"]}  # nested metrics flattened
        assert e["key"] == ToySpace().encode(e["arch"]) and e["eval_time_s"] >= 0

    best = json.loads((tmp_path / BEST_FILE).read_text())
    assert best["arch"] == result.best.arch and best["fitness"] == result.best.fitness == max(
        e["fitness"] for e in entries
    )
    assert best["costs"] == {"flops": toy_flops(result.best.arch)} and best["metric"] == "bbox/AP"
    assert best["search"]["SEARCH.SEED"] == 0 and best["search"]["limit.flops"] == LIMIT
    assert [c.fitness for c in result.topk] == sorted((c.fitness for c in result.topk), reverse=True)

    image = imread(str(tmp_path / PLOT_FILE))
    assert image.shape == (480, 1200, 4)
    assert float(np.std(image[..., :3])) > 0  # something was drawn

    assert [gen for gen, _ in stats_seen] == [0, 1, 2, 3]
    assert [stats for _, stats in stats_seen] == result.history
    for gen, stats in stats_seen:
        in_generation = [e["fitness"] for e in entries if e["generation"] == gen]
        so_far = [e for e in entries if e["generation"] <= gen]
        assert (stats["best"], stats["worst"]) == (max(in_generation), min(in_generation))
        assert stats["best_so_far"] == max(e["fitness"] for e in so_far)
        assert stats["n_evaluated"] == len(so_far)
        assert stats["best_so_far_flops"] == toy_flops(ToySpace().decode(stats["best_so_far_key"]))


def test_non_finite_metrics_rank_last_and_errors_name_the_metric(tmp_path):
    def evaluator(archs):
        return [{"bbox/AP": float("nan") if arch[0] == 3 else float(sum(arch))} for arch in archs]

    result = make_engine(str(tmp_path), evaluator).run()
    entries = log_entries(str(tmp_path))
    assert any(e["fitness"] is None for e in entries) and result.best.fitness is not None
    assert all(e["metrics"]["bbox/AP"] is None for e in entries if e["arch"][0] == 3)

    with pytest.raises(
        ValueError,
        match=re.escape("metrics have no 'bbox/AP' (the fitness metric, SEARCH.METRIC); available: ['segm/AP']"),
    ):
        make_engine(None, lambda archs: [{"segm": {"AP": 1.0}} for _ in archs]).run()
    with pytest.raises(ValueError, match="one metrics dict per candidate: got list of length 0 for 1 candidates"):
        make_engine(None, lambda archs: []).run()
    with pytest.raises(ValueError, match="metric 'bbox/AP' must be a number, got 'high'"):
        make_engine(None, lambda archs: [{"bbox/AP": "high"} for _ in archs]).run()


def test_distributed_seam_other_rank_evaluates_the_same_batches(tmp_path, reference_run):
    ref_dir, ref_result, _ = reference_run
    channel = queue.Queue()

    def send(obj):
        channel.put(obj)
        return obj

    def receive(_):
        return channel.get(timeout=30)

    worker_evaluator = CountingEvaluator(ToySpace())
    worker = make_engine(None, worker_evaluator)
    worker_result = []
    thread = threading.Thread(
        target=lambda: worker_result.append(run_on_every_rank(worker, is_main=False, broadcast=receive))
    )
    thread.start()
    main_evaluator = CountingEvaluator(ToySpace())
    result = run_on_every_rank(make_engine(str(tmp_path), main_evaluator, eval_batch_size=3), broadcast=send)
    thread.join(timeout=30)

    assert not thread.is_alive() and worker_result == [None]
    assert worker_evaluator.batches == main_evaluator.batches
    assert max(len(b) for b in main_evaluator.batches) == 3
    # batching changes neither the trajectory nor the state
    assert result == ref_result
    assert read_bytes(tmp_path / STATE_FILE) == read_bytes(os.path.join(ref_dir, STATE_FILE))
    with pytest.raises(ValueError, match="is_main=False needs a broadcast callable"):
        run_on_every_rank(make_engine(None, worker_evaluator), is_main=False)


def test_engine_from_config(tmp_path):
    cfg = get_cfg()
    add_search_config(cfg)
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.SEARCH.POPULATION, cfg.SEARCH.GENERATIONS, cfg.SEARCH.TOPK = 8, 3, 3
    cfg.SEARCH.NUM_MUTATION, cfg.SEARCH.NUM_CROSSOVER = 3, 3
    cfg.SEARCH.FLOPS_LIMIT = LIMIT
    evaluator = CountingEvaluator(ToySpace())
    engine = SearchRunner(cfg, ToySpace(), evaluator, cost_fns={"flops": toy_flops}, plot_each_generation=False)
    result = engine.run()
    assert result.n_evaluated == sum(evaluator.counts.values()) <= 24
    best = json.loads((tmp_path / BEST_FILE).read_text())
    assert best["search"]["SEARCH.FLOPS_MODE"] == "backbone"
    assert best["search"]["SEARCH.DETECTOR_INPUT_SIZE"] == [800, 1333]
    assert best["search"]["SEARCH.BN_RECALIB.MODE"] == "cumulative"

    cfg.SEARCH.PARAMS_LIMIT = 5e6
    with pytest.raises(
        ValueError, match=re.escape("a limit is set for cost 'params' (5e+06) but no cost function named 'params'")
    ):
        SearchRunner(cfg, ToySpace(), evaluator, cost_fns={"flops": toy_flops})
    cfg.SEARCH.PARAMS_LIMIT = 0
    cfg.SEARCH.TOPK = 0
    with pytest.raises(ValueError, match=re.escape("cfg.SEARCH.TOPK = 0 is invalid")):
        SearchRunner(cfg, ToySpace(), evaluator, cost_fns={"flops": toy_flops})


def folder_bytes(folder):
    """Every file of ``folder`` (relative path -> bytes), to show that a refused run changed nothing."""
    return {
        os.path.relpath(os.path.join(root, name), folder): read_bytes(os.path.join(root, name))
        for root, _, names in os.walk(folder)
        for name in names
    }


def test_new_search_where_a_search_is_is_refused_before_writing(tmp_path, reference_run):
    ref_dir, ref_result, _ = reference_run
    out = str(tmp_path / "out")
    shutil.copytree(ref_dir, out)
    before = folder_bytes(out)
    evaluator = CountingEvaluator(ToySpace())
    with pytest.raises(SearchExistsError, match=rf"{re.escape(out)} already holds a search .*--resume.*--overwrite"):
        make_engine(out, evaluator).run()
    with pytest.raises(SearchExistsError):
        make_engine(out, evaluator).check_start(resume=False)
    assert folder_bytes(out) == before and not evaluator.batches
    make_engine(out, evaluator).check_start(resume=True)  # the search itself can be resumed


def _kill_and_break_state(folder, damage, kill_after=23):
    """A search killed after ``kill_after`` evaluations whose state file is then damaged."""
    with pytest.raises(SimulatedKill):
        make_engine(folder, CountingEvaluator(ToySpace(), kill_after=kill_after)).run()
    state = os.path.join(folder, STATE_FILE)
    text = read_bytes(state)
    if damage == "missing":
        os.remove(state)
    else:
        with open(state, "wb") as f:
            f.write(b"" if damage == "empty" else text[: len(text) // 2])


@pytest.mark.parametrize("damage", ["empty", "truncated", "missing"])
def test_unreadable_state_is_rebuilt_exactly_from_the_log(tmp_path, reference_run, damage):
    ref_dir, ref_result, ref_evaluator = reference_run
    _kill_and_break_state(str(tmp_path), damage)
    with open(tmp_path / LOG_FILE, "a") as f:
        f.write('{"key": "torn')  # a line cut by the kill
    make_engine(str(tmp_path), CountingEvaluator(ToySpace())).check_start(resume=True)
    second = CountingEvaluator(ToySpace())
    assert make_engine(str(tmp_path), second).run(resume=True) == ref_result
    assert sum(second.counts.values()) == ref_result.n_evaluated - 23  # the logged candidates are not evaluated
    assert read_bytes(tmp_path / STATE_FILE) == read_bytes(os.path.join(ref_dir, STATE_FILE))
    assert without_timing(log_entries(str(tmp_path))) == without_timing(log_entries(ref_dir))


def test_unreadable_state_without_a_log_names_the_file(tmp_path):
    _kill_and_break_state(str(tmp_path), "truncated", kill_after=5)
    os.remove(tmp_path / LOG_FILE)
    message = rf"{re.escape(str(tmp_path / STATE_FILE))} is not valid JSON .*cannot be rebuilt because .*{LOG_FILE}"
    with pytest.raises(CorruptStateError, match=message):
        make_engine(str(tmp_path), CountingEvaluator(ToySpace())).run(resume=True)


def test_log_of_other_settings_does_not_rebuild_the_state_and_nothing_is_written(tmp_path):
    _kill_and_break_state(str(tmp_path), "empty", kill_after=5)
    before = folder_bytes(str(tmp_path))
    with pytest.raises(ValueError, match=rf"{re.escape(str(tmp_path / LOG_FILE))} was scored under other settings"):
        make_engine(str(tmp_path), CountingEvaluator(ToySpace()), seed=1).check_start(resume=True)
    assert folder_bytes(str(tmp_path)) == before


def test_search_without_a_finite_fitness_ends_with_an_error_and_no_winner(tmp_path):
    def nan_evaluator(archs):
        return [{"bbox": {"AP": float("nan")}} for _ in archs]

    with pytest.raises(NoFiniteFitnessError, match=r"no candidate has a finite bbox/AP .*all 40 evaluated"):
        make_engine(str(tmp_path), nan_evaluator).run()
    assert not os.path.exists(tmp_path / BEST_FILE)
    assert len(log_entries(str(tmp_path))) == 40


def test_slow_random_sampling_logs_its_progress(monkeypatch, caplog):
    monkeypatch.setattr(strategies_module, "PROGRESS_PERIOD_S", 0.0)
    with caplog.at_level(logging.INFO, logger="detnas_d2.search"):
        make_engine(None, CountingEvaluator(ToySpace()), generations=1).run()
    assert "Seeking random legal candidates: 0 of 10 found in 1 draws" in caplog.text


def test_search_metrics_keep_every_generation_when_a_write_was_lost(tmp_path):
    """A kill (or a full disk) between generation 0's state save and its search_metrics.json row: the resumed
    search still writes that row."""
    out = str(tmp_path)
    with pytest.raises(SimulatedKill):
        killer = GenerationCallback(_kill_at_generation_end(0))
        make_engine(out, CountingEvaluator(ToySpace()), hooks=[killer, SearchEventWriter(out)]).run()
    writer = SearchEventWriter(out)
    result = make_engine(out, CountingEvaluator(ToySpace()), hooks=[writer]).run(resume=True)
    writer.close()
    with open(os.path.join(out, "search_metrics.json")) as f:
        rows = [json.loads(line) for line in f]
    assert [row["iteration"] for row in rows] == [0, 1, 2, 3]
    assert rows[-1]["search/best_so_far"] == result.best.fitness
