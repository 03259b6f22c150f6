"""The ground-truth benchmark's architecture choice and table file (benchmarks/ground_truth)."""

import json
import os
import sys
import threading

import pytest

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "ground_truth")
)
import benchmark  # noqa: E402


def test_the_architectures_cover_block_types_the_flops_range_and_a_3_percent_band():
    specs = benchmark.architectures()
    archs = [tuple(s["arch"]) for s in specs]
    assert len(archs) == len(set(archs)) >= 24
    assert specs == benchmark.architectures()  # deterministic
    flops = [benchmark.flops(a) for a in archs]
    band = [f for s, f in zip(specs, flops) if s["group"] == "band"]
    assert len(band) >= 6 and (max(band) - min(band)) / min(band) <= 0.03
    assert {tuple([c] * 20) for c in range(4)} <= set(archs)  # every block type alone: the FLOPs extremes
    assert min(flops) == benchmark.flops([0] * 20) and max(flops) == benchmark.flops([3] * 20)


def test_concurrent_writers_keep_every_result(tmp_path, monkeypatch):
    table = str(tmp_path / "table.json")

    def write(seed):
        for row in range(10):
            with benchmark.locked_table(table) as t:
                match = benchmark.row_of(t, [row])
                if match is None:
                    match = {"arch": [row], "ap": {}}
                    t["rows"].append(match)
                match["ap"][str(seed)] = float(row)

    threads = [threading.Thread(target=write, args=(seed,)) for seed in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = json.load(open(table))["rows"]
    assert sorted(r["arch"][0] for r in rows) == list(range(10))
    assert all(sorted(r["ap"]) == ["0", "1", "2"] for r in rows)
    assert json.load(open(table))["schedule"] == benchmark.SCHEDULE


def test_a_failed_update_leaves_the_table_as_it_was(tmp_path):
    table = str(tmp_path / "table.json")
    with benchmark.locked_table(table) as t:
        t["rows"].append({"arch": [1], "ap": {"0": 1.0}})
    with pytest.raises(RuntimeError):
        with benchmark.locked_table(table) as t:
            t["rows"].clear()
            raise RuntimeError("killed mid-update")
    assert json.load(open(table))["rows"] == [{"arch": [1], "ap": {"0": 1.0}}]
