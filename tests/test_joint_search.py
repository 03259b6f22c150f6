"""Joint search from one config at tiny sizes: backbone + neck by weight sharing (phase 1), the augmentation policy
by the proxy task with phase 1's winner fixed (phase 2), one combined best_config.yaml, resume per phase; and the
SEARCH.SPACE errors. The searches run in a fresh process each, as from the command line (in this process, a later
test's tiny search scored no detections)."""

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from detectron2.checkpoint import DetectionCheckpointer

import search_net
from detnas_d2.engine import Trainer
from detnas_d2.space.backbone import format_architecture
from detnas_d2.space.neck import resolve_neck_arch
from presets import REPO
from test_nasfpn_search import SHAPES, SUPERNET_CONFIG, TINY, _cfg, _read_jsonl

JOINT_CONFIG = os.path.join(SHAPES, "search_joint.yaml")
# one proxy step, at the warm-up learning rate: enough to run phase 2's machinery (a full step on this untrained
# supernet's weights makes its features blow up and the detector find nothing)
SEARCH = [
    "SEARCH.POPULATION",
    "2",
    "SEARCH.GENERATIONS",
    "1",
    "SEARCH.TOPK",
    "1",
    "SEARCH.NUM_MUTATION",
    "0",
    "SEARCH.NUM_CROSSOVER",
    "0",
    "SEARCH.PROXY.MAX_ITER",
    "1",
    "SEARCH.PROXY.STEPS",
    "()",
    "SEARCH.PROXY.TRAIN_SUBSET",
    "8",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.WARMUP_ITERS",
    "1",
    "MODEL.RETINANET.SCORE_THRESH_TEST",
    "0.0",  # untrained detectors detect something: every AP is finite
]


@pytest.fixture(scope="module")
def supernet_weights(tmp_path_factory):
    """An untrained tiny joint supernet saved as a checkpoint (the search only needs every tensor present)."""
    folder = tmp_path_factory.mktemp("joint_supernet")
    torch.manual_seed(0)
    model = Trainer.build_model(_cfg(SUPERNET_CONFIG, *TINY, "OUTPUT_DIR", str(folder)))
    DetectionCheckpointer(model, save_dir=str(folder)).save("model_final")
    return str(folder / "model_final.pth")


def _search_net(argv, data):
    """``search_net.py argv`` in a fresh process with ``DETNAS_DATA=data``; its completed process."""
    env = {**os.environ, "DETNAS_DATA": data, "PYTHONPATH": REPO}
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "search_net.py"), *argv],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def joint_search(supernet_weights, tmp_path_factory):
    """The tiny joint search's OUTPUT_DIR, its argument list and data folder."""
    data = str(tmp_path_factory.mktemp("joint_data"))
    out = str(tmp_path_factory.mktemp("joint_search") / "search")
    argv = ["--config-file", JOINT_CONFIG, *TINY, *SEARCH, "MODEL.WEIGHTS", supernet_weights, "OUTPUT_DIR", out]
    run = _search_net(argv, data)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Proxy training of" in run.stdout + run.stderr
    return out, argv, data


def _json(*path):
    with open(os.path.join(*path)) as f:
        return json.load(f)


def test_joint_search_exports_both_winners_in_one_config(joint_search):
    out, _, _ = joint_search
    first, second = os.path.join(out, "phase1_one_shot"), os.path.join(out, "phase2_proxy")
    best_arch, best_policy = _json(first, "best_arch.json"), _json(second, "best_arch.json")
    assert sorted(best_arch["arch"]) == ["backbone", "neck"]
    assert best_arch["search"]["SEARCH.SPACE"] == "backbone,neck,autoaug" and best_arch["search"]["costs"] == [
        "flops",
        "params",
    ]
    assert best_policy["search"]["SEARCH.SPACE"] == "autoaug" and best_policy["search"]["costs"] == []
    assert best_policy["search"]["SEARCH.EVALUATOR"] == "proxy"
    for name in ("search_state.json", "search_log.jsonl", "best_config.yaml", "best_weights.pth"):
        assert os.path.isfile(os.path.join(first, name))
    assert len(os.listdir(os.path.join(second, "proxy"))) == 2  # every policy trained its own detector

    with open(os.path.join(out, "best_config.yaml")) as f:
        combined = yaml.safe_load(f)
    model = combined["MODEL"]
    assert model["DETNAS"]["ARCH"] == format_architecture(best_arch["arch"]["backbone"])
    assert resolve_neck_arch(model["NASFPN"]["ARCH"]) == best_arch["arch"]["neck"] and not model["NASFPN"]["ONE_SHOT"]
    assert model["WEIGHTS"] == os.path.join(first, "best_weights.pth")  # the policy was searched from these weights
    assert combined["INPUT"]["AUTOAUGMENT"]["ENABLED"] is True
    assert combined["INPUT"]["AUTOAUGMENT"]["CUSTOM_POLICY"] == best_policy["arch"]
    assert combined["OUTPUT_DIR"] == os.path.join(os.path.abspath(out), "retrain")


def test_joint_search_resumes_each_phase_without_evaluating_again(joint_search, monkeypatch):
    out, argv, data = joint_search
    phases = ("phase1_one_shot", "phase2_proxy")
    logs = [_read_jsonl(os.path.join(out, phase, "search_log.jsonl")) for phase in phases]
    with open(os.path.join(out, "best_config.yaml")) as f:
        combined = f.read()
    run = _search_net([*argv, "--resume"], data)
    assert run.returncode == 0, run.stderr[-3000:]
    assert [_read_jsonl(os.path.join(out, phase, "search_log.jsonl")) for phase in phases] == logs
    assert "Proxy training of" not in run.stdout + run.stderr  # nothing was trained again
    with open(os.path.join(out, "best_config.yaml")) as f:
        assert f.read() == combined
    monkeypatch.setenv("DETNAS_DATA", data)
    with pytest.raises(FileExistsError, match="already holds a search"):
        search_net.cli(argv)  # a new search never starts where one is


def test_space_naming_a_part_the_model_lacks_fails_clearly(supernet_weights, tmp_path):
    argv = [
        "--config-file",
        os.path.join(SHAPES, "search_nasfpn.yaml"),
        *TINY,
        "MODEL.WEIGHTS",
        supernet_weights,
        "OUTPUT_DIR",
        str(tmp_path / "out"),
    ]
    with pytest.raises(
        ValueError,
        match=r"cfg.SEARCH.SPACE = 'backbone,neck' is invalid: this model has no one-shot "
        r"DetNAS backbone; allowed parts: \['neck', 'autoaug'\]",
    ):
        search_net.cli([*argv, "SEARCH.SPACE", "backbone,neck"])
    with pytest.raises(
        ValueError,
        match=r"cfg.SEARCH.SPACE = 'neck,head' is invalid: must be comma-separated part "
        r"names from \['autoaug', 'backbone', 'neck'\]",
    ):
        search_net.cli([*argv, "SEARCH.SPACE", "neck,head"])
    assert not os.path.exists(tmp_path / "out")  # refused before anything is written
