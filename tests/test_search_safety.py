"""search_net.py keeps what a folder holds: refused runs write nothing, --overwrite moves a search aside, one run
per OUTPUT_DIR, supernet weights checked before the first candidate, an unreadable state rebuilt from the log."""

import glob
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from detectron2.config import get_cfg
from detectron2.modeling import build_model

import detnas_d2  # noqa: F401
import search_net
from detnas_d2.cli.defaults import load_cfg, parse_command_line
from detnas_d2.cli.search import build_parser
from detnas_d2.config import add_detnas_config
from detnas_d2.engine.output_lock import LOCK_FILE, OutputDirLock
from detnas_d2.parts.model import model_search_space
from detnas_d2.search.constraints import InfeasibleConstraintError
from detnas_d2.search.launcher import build_cost_fns
from detnas_d2.search.preflight import check_output_dir, preflight_search
from detnas_d2.search.runner import NoFiniteFitnessError
from detnas_d2.search.store import SearchExistsError
from presets import REPO, SEARCH_CONFIG, STOCK_CONFIG, SUPERNET_TINY
from test_search_engine import folder_bytes

SMALL = [
    "DATASETS.SHAPES.NUM_SEARCH",
    "4",
    "SEARCH.POPULATION",
    "2",
    "SEARCH.GENERATIONS",
    "2",
    "SEARCH.TOPK",
    "1",
    "SEARCH.NUM_MUTATION",
    "1",
    "SEARCH.NUM_CROSSOVER",
    "0",
    "SEARCH.FLOPS_LIMIT",
    "30e6",
]


def _model_cfg(config, overrides):
    cfg = add_detnas_config(get_cfg())
    cfg.merge_from_file(config)
    cfg.merge_from_list([*SUPERNET_TINY, *overrides, "MODEL.DEVICE", "cpu"])
    return cfg


def _save_model(path, config=SEARCH_CONFIG, overrides=()):
    """Save the freshly initialised model of ``config`` (complete, untrained weights) to ``path``."""
    torch.save({"model": build_model(_model_cfg(config, overrides)).state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def supernet(tmp_path_factory):
    """(data root, checkpoint of an untrained tiny supernet): complete weights, finite (near-zero) AP."""
    root = tmp_path_factory.mktemp("safety")
    os.environ["DETNAS_DATA"] = str(root / "data")
    return str(root / "data"), _save_model(str(root / "supernet.pth"))


def _argv(weights, out, *extra):
    return ["--config-file", SEARCH_CONFIG, *SUPERNET_TINY, *SMALL, "MODEL.WEIGHTS", weights, "OUTPUT_DIR", out, *extra]


@pytest.fixture(scope="module")
def finished(supernet):
    """The folder of a finished tiny search."""
    out = os.path.join(os.path.dirname(supernet[1]), "finished")
    search_net.cli(_argv(supernet[1], out))
    return out


def _copy(finished, tmp_path):
    out = str(tmp_path / "search")
    shutil.copytree(finished, out)
    return out


def _env(data):
    return {**os.environ, "DETNAS_DATA": data, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}


def _search_process(data, argv, **kwargs):
    return [sys.executable, os.path.join(REPO, "search_net.py"), *argv], dict(env=_env(data), text=True, **kwargs)


def test_refused_runs_leave_a_search_folder_untouched(supernet, finished, tmp_path, monkeypatch):
    data, weights = supernet
    monkeypatch.setenv("DETNAS_DATA", data)
    out = _copy(finished, tmp_path)
    before = folder_bytes(out)
    with pytest.raises(SearchExistsError, match=f"{out} already holds a search .*--resume.*--overwrite"):
        search_net.cli(_argv(weights, out))  # a forgotten --resume
    with pytest.raises(InfeasibleConstraintError, match="cannot be met"):
        search_net.cli(_argv(weights, out, "SEARCH.FLOPS_LIMIT", "1e6"))
    with pytest.raises(ValueError, match="configuration differs .*SEARCH.SEED: state has 0, current run has 1"):
        search_net.cli(["--resume", *_argv(weights, out, "SEARCH.SEED", "1")])
    assert folder_bytes(out) == before  # config.yaml and the lock file included


def test_resume_refuses_another_supernet_or_other_fitness_rules(supernet, finished, tmp_path, monkeypatch):
    """A supernet retrained into the same MODEL.WEIGHTS file, or other input, test or data settings, would put
    candidates scored under two rules into one ranking."""
    data, weights = supernet
    monkeypatch.setenv("DETNAS_DATA", data)
    out = _copy(finished, tmp_path)
    before = folder_bytes(out)
    same = str(tmp_path / "same.pth")
    shutil.copy(weights, same)
    cfg = load_cfg(parse_command_line(build_parser(), ["--resume", *_argv(same, out)]))
    check_output_dir(preflight_search(cfg), out, resume=True, overwrite=False)  # same content, other path: accepted
    torch.manual_seed(1)
    _save_model(same)  # retrained "with another SEED" into the same file
    changed = [
        ([], r"MODEL\.WEIGHTS: state has 'sha256:\w+', current run has 'sha256:\w+'"),
        (["INPUT.MIN_SIZE_TEST", "48"], "INPUT.MIN_SIZE_TEST: state has 64, current run has 48"),
        (["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.5"], "MODEL.ROI_HEADS.SCORE_THRESH_TEST: state has"),
        (
            ["DATASETS.SHAPES.NUM_SEARCH", "6"],
            "DATASETS.SHAPES.NUM_SEARCH: state has 4, current run has 6.*search dataset",
        ),
    ]
    for overrides, message in changed:
        with pytest.raises(ValueError, match=f"cannot resume the search in .*configuration differs .*{message}"):
            search_net.cli(["--resume", *_argv(same if not overrides else weights, out, *overrides)])
    assert folder_bytes(out) == before  # config.yaml included
    os.remove(os.path.join(out, "search_state.json"))  # the log alone, without the state naming the settings
    with pytest.raises(ValueError, match="search_log.jsonl was scored under other settings than this run's: 4 of"):
        search_net.cli(["--resume", *_argv(same, out)])


def test_overwrite_moves_the_old_search_aside(supernet, finished, tmp_path):
    data, weights = supernet
    out = _copy(finished, tmp_path)
    before = folder_bytes(out)
    command, options = _search_process(data, ["--overwrite", *_argv(weights, out)])
    done = subprocess.run(command, capture_output=True, timeout=600, **options)
    assert done.returncode == 0, done.stderr[-3000:]
    (aside,) = glob.glob(f"{out}.old-*")
    assert folder_bytes(aside) == {name: data for name, data in before.items() if name != LOCK_FILE}
    assert os.path.isfile(os.path.join(out, "best_weights.pth")) and os.path.isfile(os.path.join(out, LOCK_FILE))
    with open(os.path.join(out, "search_log.jsonl")) as f:
        assert len(f.readlines()) == 4


def test_a_second_search_into_a_running_search_folder_fails_naming_the_holder(supernet, tmp_path):
    data, weights = supernet
    out = str(tmp_path / "busy")
    command, options = _search_process(data, _argv(weights, out, "SEARCH.GENERATIONS", "200"))
    first = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, **options
    )
    try:
        log = os.path.join(out, "search_log.jsonl")
        deadline = time.time() + 300
        while not (os.path.isfile(log) and os.path.getsize(log)) and time.time() < deadline:
            time.sleep(0.2)
        command, options = _search_process(data, ["--resume", *_argv(weights, out, "SEARCH.GENERATIONS", "200")])
        second = subprocess.run(command, capture_output=True, timeout=600, **options)
        assert second.returncode != 0
        assert f"OUTPUT_DIR {out} is in use by another run: pid {first.pid} on host" in second.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    with OutputDirLock(out):  # the lock of the killed run does not block
        pass


@pytest.mark.parametrize(
    "checkpoint, message",
    [
        ("", "MODEL.WEIGHTS is empty: the search would score paths of a randomly initialised supernet"),
        (
            "stock",
            r"does not provide \d+ of the \d+ tensors .* no weights of the supernet \(a stock ResNet"
            r"|backbone tensors do not fit this model: 'backbone\.fpn_lateral2\.weight' is \(16, 64, 1, 1\)",
        ),
        ("wider", "(?i)width"),
    ],
    ids=["empty", "stock-resnet", "other-width"],
)
def test_search_refuses_weights_that_do_not_fit_the_supernet(supernet, tmp_path, monkeypatch, checkpoint, message):
    monkeypatch.setenv("DETNAS_DATA", supernet[0])
    path = {
        "": "",
        "stock": lambda: _save_model(str(tmp_path / "r18.pth"), STOCK_CONFIG, ["MODEL.RESNETS.DEPTH", "18"]),
        "wider": lambda: _save_model(str(tmp_path / "wide.pth"), overrides=["MODEL.DETNAS.WIDTH_MULT", "0.5"]),
    }
    weights = path[checkpoint]() if checkpoint else ""
    out = str(tmp_path / "out")
    with pytest.raises(Exception, match=message):
        search_net.cli(_argv(weights, out))
    assert not os.path.exists(out)


def test_search_without_a_finite_fitness_fails_and_exports_nothing(supernet, tmp_path, monkeypatch):
    data, weights = supernet
    monkeypatch.setenv("DETNAS_DATA", data)
    out = str(tmp_path / "out")
    with pytest.raises(NoFiniteFitnessError, match="no candidate has a finite bbox/AP"):
        search_net.cli(_argv(weights, out, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "1.0"))  # no detections: AP NaN
    assert not {"best_arch.json", "best_config.yaml", "best_weights.pth"} & set(os.listdir(out))


@pytest.mark.unit
def test_held_out_split_wins_over_the_configs_search_dataset(supernet, caplog):
    args = parse_command_line(
        build_parser(), ["--config-file", SEARCH_CONFIG, *SUPERNET_TINY, "DATASETS.SEARCH_HOLDOUT.SIZE", "4"]
    )
    with caplog.at_level(logging.WARNING):
        cfg = load_cfg(args)
    assert cfg.SEARCH.DATASET == "shapes_train_search" and cfg.DATASETS.TRAIN == ("shapes_train_minus_search",)
    assert "DATASETS.SEARCH_HOLDOUT.SIZE = 4 wins over SEARCH.DATASET = 'shapes_search'" in caplog.text


def test_exported_config_retrains_into_a_fresh_folder(finished):
    with open(os.path.join(finished, "best_config.yaml")) as f:
        exported = yaml.safe_load(f)
    assert exported["OUTPUT_DIR"] == os.path.join(finished, "retrain")
    assert not os.path.exists(exported["OUTPUT_DIR"])


def test_resume_with_an_unreadable_state_rebuilds_it_from_the_log(supernet, finished, tmp_path, monkeypatch):
    data, weights = supernet
    monkeypatch.setenv("DETNAS_DATA", data)
    out = _copy(finished, tmp_path)
    before = folder_bytes(out)
    with open(os.path.join(out, "search_state.json"), "wb") as f:
        f.write(before["search_state.json"][:100])
    search_net.cli([*_argv(weights, out), "--resume"])  # the option after the overrides
    after = folder_bytes(out)
    assert after["search_state.json"] == before["search_state.json"]  # rebuilt exactly
    assert after["search_log.jsonl"] == before["search_log.jsonl"]  # nothing evaluated again
    assert json.loads(after["best_arch.json"]) == json.loads(before["best_arch.json"])


def _smallest_flops_and_cost_fns():
    """(exact smallest backbone FLOPs, cost functions, search space) of the tiny supernet."""
    cfg = _model_cfg(SEARCH_CONFIG, [])
    model = build_model(cfg)
    cost_fns, cost_range = build_cost_fns(cfg, model)
    return cost_range("flops")[0], cost_fns, model_search_space(model)


@pytest.mark.unit
def test_cost_of_a_candidate_does_not_walk_the_model(supernet):
    """A limit barely above the smallest cost used to spend ~100 s in random draws of milliseconds each."""
    _, cost_fns, space = _smallest_flops_and_cost_fns()
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(5000)]
    start = time.perf_counter()
    for arch in archs:
        cost_fns["flops"](arch), cost_fns["params"](arch)
    assert time.perf_counter() - start < 2.0  # walking the model per call took ~11 s here


def test_a_limit_barely_above_the_smallest_cost_fails_fast_and_says_so(supernet, tmp_path, monkeypatch):
    data, weights = supernet
    monkeypatch.setenv("DETNAS_DATA", data)
    smallest = _smallest_flops_and_cost_fns()[0]
    with pytest.raises(InfeasibleConstraintError, match="Raise the limit .*or SEARCH.MAX_RANDOM_TRIES"):
        search_net.cli(_argv(weights, str(tmp_path / "out"), "SEARCH.FLOPS_LIMIT", f"{smallest + 1:.1f}"))
