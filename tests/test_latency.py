"""Latency cost: cache reuse across runs (counted measurements), per-key entries, block table, config errors.

No timing asserts: values are only checked to be positive and to round-trip through the cache.
"""

import json
import os
import random

import pytest
from detectron2.config import get_cfg

import detnas_d2  # noqa: F401
from detnas_d2.config import add_detnas_config
from detnas_d2.cost.latency import BlockLatencyTable, LatencyCache, LatencyMeasurer, MeasuredLatency, relative_errors
from detnas_d2.engine import Trainer
from detnas_d2.search.config import validate_search_config
from detnas_d2.search.launcher import build_cost_fns
from detnas_d2.search.proxy import build_proxy_cost_fns
from detnas_d2.space.backbone import BackboneSearchSpace, smallest_width_mult, space_layout
from presets import SEARCH_CONFIG, SUPERNET_TINY, TINY_LATENCY

LAYOUT = space_layout("small").scaled(smallest_width_mult(space_layout("small")))


def _measurer(size=(32, 32), batch_size=1):
    """A measurer of the narrowest small-space layout: one untimed and one timed run."""
    return LatencyMeasurer("small", LAYOUT, batch_size=batch_size, input_size=size, warmup=0, runs=1)


def _archs(n, seed=0):
    rng = random.Random(seed)
    return [BackboneSearchSpace("small").sample(rng) for _ in range(n)]


def test_second_run_reuses_the_cache_without_measuring(tmp_path):
    path = str(tmp_path / "latency_cache.json")
    archs = _archs(3)
    first = _measurer()
    values = [MeasuredLatency(first, LatencyCache(path))(arch) for arch in archs]
    assert first.num_measured == 3 and all(v > 0 for v in values)
    second = _measurer()  # a new run: fresh measurer and cache object over the same file
    cost = MeasuredLatency(second, LatencyCache(path))
    assert [cost(arch) for arch in archs] == values
    assert second.num_measured == 0
    assert [name for name in os.listdir(tmp_path)] == ["latency_cache.json"]  # atomic write left no temp file


def test_cache_is_keyed_per_input_shape(tmp_path):
    path = str(tmp_path / "latency_cache.json")
    arch = _archs(1)[0]
    MeasuredLatency(_measurer((32, 32)), LatencyCache(path))(arch)
    other = _measurer((32, 48), batch_size=2)
    MeasuredLatency(other, LatencyCache(path))(arch)
    assert other.num_measured == 1
    with open(path) as f:
        keys = sorted(json.load(f)["measured"])
    assert len(keys) == 2 and "1x3x32x32" in keys[0] + keys[1] and "2x3x32x48" in keys[0] + keys[1]


def test_isolated_table_times_each_block_shape_and_choice_once():
    measurer = _measurer()
    table = BlockLatencyTable.measure(measurer, "isolated")
    distinct = {shape for shape in measurer.block_shapes()}
    assert measurer.num_measured == 1 + 4 * len(distinct)  # stem + each (shape, choice) once
    assert len(table.blocks) == 20 and all(len(row) == 4 and min(row) > 0 for row in table.blocks)
    with pytest.raises(ValueError, match="in_context"):
        BlockLatencyTable.measure(measurer, "guess")


def test_block_table_measured_once_and_predicts_every_path(tmp_path):
    path = str(tmp_path / "latency_cache.json")
    measurer = _measurer()
    table = BlockLatencyTable.cached(measurer, LatencyCache(path))
    assert measurer.num_measured == 4  # in context: the four uniform paths, every block timed inside them
    again = _measurer()
    reloaded = BlockLatencyTable.cached(again, LatencyCache(path))
    assert again.num_measured == 0
    for arch in _archs(5):
        assert reloaded(arch) == pytest.approx(table(arch)) and table(arch) > 0


def test_statistic_and_clock_get_their_own_cache_keys():
    assert _measurer().key + "|min" == LatencyMeasurer("small", LAYOUT, input_size=(32, 32), statistic="min").key
    assert _measurer().key + "|clock=cpu" == LatencyMeasurer("small", LAYOUT, input_size=(32, 32), clock="cpu").key
    with pytest.raises(ValueError, match="median"):
        LatencyMeasurer("small", LAYOUT, statistic="mean")
    with pytest.raises(ValueError, match="wall"):
        LatencyMeasurer("small", LAYOUT, clock="gpu")


def test_unreadable_cache_names_the_file(tmp_path):
    path = tmp_path / "latency_cache.json"
    path.write_text('{"version": 1, "meas')
    with pytest.raises(ValueError, match="latency_cache.json is not valid JSON"):
        LatencyCache(str(path))
    path.write_text('{"version": 0, "measured": {"k": {"a": 1.0}}}')  # another layout version: starts empty
    assert LatencyCache(str(path)).get("k", "a") is None


def test_relative_errors():
    assert relative_errors([1.0, 3.0], [2.0, 2.0]) == (0.5, 0.5)
    assert relative_errors([2.0, 3.0], [2.0, 2.0]) == (0.25, 0.5)


def _cfg(tmp_path, *extra):
    cfg = add_detnas_config(get_cfg())
    cfg.merge_from_file(SEARCH_CONFIG)
    cfg.merge_from_list([*SUPERNET_TINY, "MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(tmp_path), *extra])
    return cfg


LATENCY = TINY_LATENCY


@pytest.mark.parametrize("mode", ["measure", "lut"])
def test_search_cost_fns_hold_latency_cached_in_the_search_folder(tmp_path, monkeypatch, mode):
    counted = []
    for name in ("measure", "measure_in_context"):
        original = getattr(LatencyMeasurer, name)
        monkeypatch.setattr(
            LatencyMeasurer, name, lambda self, *a, _f=original, _n=name: counted.append(_n) or _f(self, *a)
        )
    cfg = _cfg(tmp_path, "SEARCH.LATENCY.MODE", mode, "SEARCH.LATENCY.LIMIT", "1000.0", *LATENCY)
    validate_search_config(cfg)
    model = Trainer.build_model(cfg)
    archs = _archs(2)
    latency = build_cost_fns(cfg, model)[0]["latency"]
    assert counted == [] and os.listdir(tmp_path) == []  # building the costs (pre-flight) times and writes nothing
    values = [latency(arch) for arch in archs]
    assert counted and os.path.exists(tmp_path / "latency_cache.json")
    del counted[:]
    cost_fns, cost_range = build_cost_fns(cfg, model)  # second run over the same folder
    assert [cost_fns["latency"](arch) for arch in archs] == values and counted == []
    assert {"flops", "params", "latency"} <= set(cost_fns) and cost_range("latency") is None


@pytest.mark.parametrize(
    "extra, key",
    [
        (["SEARCH.LATENCY.MODE", "fast"], "SEARCH.LATENCY.MODE"),
        (["SEARCH.LATENCY.LIMIT", "5.0"], "SEARCH.LATENCY.LIMIT"),
        (["SEARCH.LATENCY.MODE", "lut", "SEARCH.LATENCY.RUNS", "0"], "SEARCH.LATENCY.RUNS"),
        (["SEARCH.LATENCY.MODE", "lut", "SEARCH.LATENCY.INPUT_SIZE", "(32,)"], "SEARCH.LATENCY.INPUT_SIZE"),
        (["SEARCH.LATENCY.MODE", "lut", "SEARCH.LATENCY.CLOCK", "gpu"], "SEARCH.LATENCY.CLOCK"),
    ],
)
def test_invalid_latency_keys_name_the_key(tmp_path, extra, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        validate_search_config(_cfg(tmp_path, *extra))


def test_proxy_search_rejects_latency(tmp_path):
    cfg = _cfg(tmp_path, "SEARCH.LATENCY.MODE", "measure", "SEARCH.EVALUATOR", "proxy")
    with pytest.raises(ValueError, match=r"SEARCH\.LATENCY\.MODE"):
        build_proxy_cost_fns(cfg, BackboneSearchSpace("small"))


def test_search_engine_keeps_candidates_under_the_latency_limit(tmp_path):
    from detnas_d2.search.runner import SearchRunner
    from tests.test_search_strategies import CountingEvaluator, ToySpace  # 20 genes x 4 choices: small-space paths

    table = BlockLatencyTable.measure(_measurer())
    limit = sorted(table(arch) for arch in _archs(21, seed=1))[10]  # the median path's predicted latency
    cfg = _cfg(
        tmp_path,
        "SEARCH.LATENCY.MODE",
        "lut",
        "SEARCH.LATENCY.LIMIT",
        str(limit),
        "SEARCH.FLOPS_LIMIT",
        "0.0",
        "SEARCH.POPULATION",
        "6",
        "SEARCH.GENERATIONS",
        "2",
        "SEARCH.TOPK",
        "2",
        "SEARCH.NUM_MUTATION",
        "2",
        "SEARCH.NUM_CROSSOVER",
        "2",
    )
    engine = SearchRunner(
        cfg, ToySpace(), CountingEvaluator(ToySpace()), cost_fns={"latency": table}, plot_each_generation=False
    )
    engine.run()
    with open(tmp_path / "search_log.jsonl") as f:
        logged = [json.loads(line) for line in f]
    costs = [entry["costs"]["latency"] for entry in logged if "costs" in entry]
    assert costs and all(value <= limit for value in costs)
