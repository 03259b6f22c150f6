"""search_net.py on a tiny trained supernet: BN recalibration, 1 vs 2 processes, resume, export, eval-only parity."""

import json
import os

import pytest
import torch
from detectron2.config import get_cfg

import detnas_d2  # noqa: F401
import search_net
import train_net
from detnas_d2.config import add_detnas_config
from detnas_d2.data.datasets import register_from_config
from detnas_d2.engine import Trainer
from detnas_d2.engine.bn_recalib import batchnorm_modules
from detnas_d2.modeling.checkpoint import DetNASCheckpointer
from detnas_d2.parts.model import set_model_arch
from detnas_d2.search.one_shot import OneShotFitness
from detnas_d2.search.runner import SearchRunner
from presets import SEARCH_CONFIG, SEARCH_TINY, SHAPES, SUPERNET_TINY, SUPERNET_TINY_DATA


def _search_cfg(weights, out, extra=()):
    cfg = add_detnas_config(get_cfg())
    cfg.merge_from_file(SEARCH_CONFIG)
    cfg.merge_from_list([*SUPERNET_TINY, *SEARCH_TINY, "MODEL.WEIGHTS", weights, "OUTPUT_DIR", out, *extra])
    register_from_config(cfg)
    return cfg


def _log(out):
    with open(os.path.join(out, "search_log.jsonl")) as f:
        return [json.loads(line) for line in f]


def _comparable(entries):
    return [{k: e[k] for k in ("arch", "metrics", "costs", "fitness", "generation")} for e in entries]


def test_bn_recalibration_changes_statistics_deterministically(tiny_supernet, tmp_path, monkeypatch):
    data, weights = tiny_supernet
    monkeypatch.setenv("DETNAS_DATA", data)
    cfg = _search_cfg(weights, str(tmp_path))
    model = Trainer.build_model(cfg)
    DetNASCheckpointer(model).load(weights)
    evaluator = OneShotFitness(cfg, model).evaluate_one
    set_model_arch(model, [0] * 20)
    stats = lambda: [bn.running_mean.clone() for bn in batchnorm_modules(model)]  # noqa: E731
    before = stats()
    evaluator.recalibrate()
    first = stats()
    evaluator.recalibrate()
    second = stats()
    assert any(not torch.equal(a, b) for a, b in zip(before, first))
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_search_two_processes_equal_one_and_eval_only_matches(tiny_supernet, tmp_path, monkeypatch):
    data, weights = tiny_supernet
    monkeypatch.setenv("DETNAS_DATA", data)
    outs = {n: str(tmp_path / f"search{n}") for n in (1, 2)}
    for n, out in outs.items():
        search_net.cli(
            [
                "--config-file",
                SEARCH_CONFIG,
                "--num-gpus",
                str(n),
                "--dist-url",
                "auto",
                *SUPERNET_TINY,
                *SEARCH_TINY,
                "MODEL.WEIGHTS",
                weights,
                "OUTPUT_DIR",
                out,
            ]
        )
    one, two = _log(outs[1]), _log(outs[2])
    assert len(one) >= 6 and _comparable(one) == _comparable(two)
    assert len({json.dumps(e["arch"]) for e in one}) == len(one)  # nothing evaluated twice
    assert any(e["fitness"] > 0 for e in one), "the tiny supernet should detect something"
    with open(os.path.join(outs[1], "best_arch.json")) as f:
        best = json.load(f)
    for name in ("search_state.json", "search_progress.png", "best_config.yaml", "best_weights.pth"):
        assert os.path.isfile(os.path.join(outs[1], name))

    # the log's AP of a candidate = train_net.py --eval-only of that fixed architecture with supernet weights
    entry = one[-1]
    results = train_net.cli(
        [
            "--config-file",
            SEARCH_CONFIG,
            "--eval-only",
            *SUPERNET_TINY,
            "MODEL.WEIGHTS",
            weights,
            "MODEL.DETNAS.ARCH",
            ",".join(map(str, entry["arch"])),
            "SUPERNET.EVAL.RECALIBRATE_FIXED",
            "True",
            "DATASETS.TEST",
            "('shapes_search',)",
            "OUTPUT_DIR",
            str(tmp_path / "eval"),
        ]
    )
    assert results["bbox"]["AP"] == pytest.approx(entry["metrics"]["bbox/AP"], abs=1e-9)

    # the exported config + weights reproduce the best candidate's AP without recalibrating again
    results = train_net.cli(
        [
            "--config-file",
            os.path.join(outs[1], "best_config.yaml"),
            "--eval-only",
            "DATASETS.TEST",
            "('shapes_search',)",
            "OUTPUT_DIR",
            str(tmp_path / "eval_best"),
        ]
    )
    assert results["bbox"]["AP"] == pytest.approx(best["fitness"], abs=1e-9)

    # search progress as detectron2 events: one JSON line and TensorBoard step per generation
    with open(os.path.join(outs[1], "search_metrics.json")) as f:
        events = [json.loads(line) for line in f]
    assert [e["iteration"] for e in events] == [0, 1]
    assert events[-1]["search/best_so_far"] == pytest.approx(best["fitness"])
    assert events[-1]["search/n_evaluated"] == len(one)
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(outs[1]))

    # resuming a finished search evaluates nothing again
    search_net.cli(
        [
            "--config-file",
            SEARCH_CONFIG,
            "--resume",
            *SUPERNET_TINY,
            *SEARCH_TINY,
            "MODEL.WEIGHTS",
            weights,
            "OUTPUT_DIR",
            outs[1],
        ]
    )
    assert _log(outs[1]) == one


def test_controller_search_runs_end_to_end_and_resumes(tiny_supernet, tmp_path, monkeypatch):
    data, weights = tiny_supernet
    monkeypatch.setenv("DETNAS_DATA", data)
    out = str(tmp_path / "controller")
    args = [
        "--config-file",
        SEARCH_CONFIG,
        *SUPERNET_TINY,
        *SEARCH_TINY,
        "SEARCH.STRATEGY",
        "controller",
        "SEARCH.CONTROLLER.HIDDEN_SIZE",
        "16",
        "MODEL.WEIGHTS",
        weights,
        "OUTPUT_DIR",
        out,
    ]
    search_net.cli(args)
    log = _log(out)
    assert len(log) == 8 and len({json.dumps(e["arch"]) for e in log}) == 8
    with open(os.path.join(out, "search_state.json")) as f:
        state = json.load(f)
    assert state["strategy"]["strategy"] == "controller" and state["strategy"]["baseline"] is not None
    assert state["fingerprint"]["SEARCH.CONTROLLER.HIDDEN_SIZE"] == 16
    for name in ("best_arch.json", "best_config.yaml", "best_weights.pth"):
        assert os.path.isfile(os.path.join(out, name))
    search_net.cli([*args, "--resume"])  # a finished search: nothing evaluated again
    assert _log(out) == log

    # killed in the middle of generation 2, then resumed: the same state bytes as the uninterrupted run
    killed = str(tmp_path / "killed")
    real_evaluate, calls = SearchRunner._evaluate_fresh, []

    def evaluate_then_die(engine, keys, generation):
        calls.append(keys)
        if len(calls) == 6:
            raise KeyboardInterrupt("killed")
        real_evaluate(engine, keys, generation)

    monkeypatch.setattr(SearchRunner, "_evaluate_fresh", evaluate_then_die)
    killed_args = [*args[:-1], killed]
    with pytest.raises(KeyboardInterrupt):
        search_net.cli(killed_args)
    monkeypatch.setattr(SearchRunner, "_evaluate_fresh", real_evaluate)
    search_net.cli([*killed_args, "--resume"])
    states = []
    for folder in (out, killed):
        with open(os.path.join(folder, "search_state.json"), "rb") as f:
            states.append(f.read())
    assert states[0] == states[1]
    assert _comparable(_log(killed)) == _comparable(log)


def test_controller_searches_a_joint_backbone_and_nasfpn_neck_space(tiny_supernet, tmp_path, monkeypatch):
    data, _ = tiny_supernet
    monkeypatch.setenv("DETNAS_DATA", data)
    # a narrow neck; every score kept, so a 10-iteration RetinaNet always detects something (its scores sit near the
    # default 0.05 threshold, and whether any candidate clears it depended on which tests ran before in the process)
    tiny = [*SUPERNET_TINY_DATA, "MODEL.NASFPN.CHANNELS", "16", "MODEL.NASFPN.NUM_REPEATS", "1"]
    tiny += ["MODEL.RETINANET.SCORE_THRESH_TEST", "0.0"]
    train = str(tmp_path / "train")
    train_net.cli(
        [
            "--config-file",
            os.path.join(SHAPES, "supernet_nasfpn_retinanet.yaml"),
            *tiny,
            "SOLVER.MAX_ITER",
            "10",
            "SOLVER.IMS_PER_BATCH",
            "4",
            "SOLVER.WARMUP_ITERS",
            "2",
            "SOLVER.STEPS",
            "()",
            "DATASETS.TEST",
            "()",
            "OUTPUT_DIR",
            train,
        ]
    )
    out = str(tmp_path / "search")
    search_net.cli(
        [
            "--config-file",
            os.path.join(SHAPES, "search_nasfpn.yaml"),
            *tiny,
            "SEARCH.STRATEGY",
            "controller",
            "MODEL.DETNAS.ARCH",
            "",
            "SEARCH.FLOPS_LIMIT",
            "0.0",
            "SEARCH.POPULATION",
            "3",
            "SEARCH.GENERATIONS",
            "2",
            "SEARCH.TOPK",
            "2",
            "SEARCH.NUM_MUTATION",
            "1",
            "SEARCH.NUM_CROSSOVER",
            "1",
            "MODEL.WEIGHTS",
            os.path.join(train, "model_final.pth"),
            "OUTPUT_DIR",
            out,
        ]
    )
    log = _log(out)
    assert len(log) == 6 and all(set(e["arch"]) == {"backbone", "neck"} for e in log)
    assert all(sorted(cell[2] for cell in e["arch"]["neck"][-5:]) == [3, 4, 5, 6, 7] for e in log)
