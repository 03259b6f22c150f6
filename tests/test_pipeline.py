"""The one-command pipeline: end to end on tiny shapes settings, nothing redone on a rerun, resume after a kill."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from detnas_d2.engine.output_lock import LOCK_FILE
from detnas_d2.pipeline import STAGE_TIME, Pipeline, PipelineError, load_pipeline
from presets import REPO, SHAPES

TINY = [
    "MODEL.DETNAS.WIDTH_MULT",
    0.25,
    "DATALOADER.NUM_WORKERS",
    0,
    "DATASETS.SHAPES.NUM_TRAIN",
    32,
    "DATASETS.SHAPES.NUM_SEARCH",
    6,
    "DATASETS.SHAPES.NUM_VAL",
    6,
    "DATASETS.SHAPES.IMAGE_SIZE",
    64,
    "SOLVER.IMS_PER_BATCH",
    4,
    "SOLVER.WARMUP_ITERS",
    0,
]
DETECTION = [
    "MODEL.FPN.OUT_CHANNELS",
    16,
    "MODEL.ROI_BOX_HEAD.CONV_DIM",
    16,
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    32,
    "INPUT.MIN_SIZE_TRAIN",
    "(64,)",
    "INPUT.MAX_SIZE_TRAIN",
    64,
    "INPUT.MIN_SIZE_TEST",
    64,
    "INPUT.MAX_SIZE_TEST",
    64,
    "SEARCH.BN_RECALIB.NUM_BATCHES",
    1,
    "SEARCH.BN_RECALIB.BATCH_SIZE",
    2,
    "SUPERNET.EVAL.NUM_PATHS",
    1,
    "SUPERNET.EVAL.BN_RECALIB.NUM_BATCHES",
    1,
    "SUPERNET.EVAL.BN_RECALIB.BATCH_SIZE",
    2,
    "SOLVER.STEPS",
    "()",
    # a few iterations leave every score near the prior: keep them all, so the search has a finite fitness on any
    # CPU (at 0.05 the tiny supernet detected nothing on some machines and the search stage stopped)
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    0.0,
]


def write_pipeline(tmp_path, finetune_iters=4):
    spec = {
        "output_dir": str(tmp_path / "out"),
        "stages": {
            "pretrain": {
                "config": os.path.join(SHAPES, "supernet_cls.yaml"),
                "opts": TINY + ["SOLVER.MAX_ITER", 2, "SOLVER.CHECKPOINT_PERIOD", 1, "DATASETS.TEST", "()"],
            },
            "finetune": {
                "config": os.path.join(SHAPES, "supernet_fpn.yaml"),
                "opts": TINY + DETECTION + ["SOLVER.MAX_ITER", finetune_iters, "SOLVER.CHECKPOINT_PERIOD", 1],
            },
            "search": {
                "config": os.path.join(SHAPES, "search_fpn.yaml"),
                "opts": TINY
                + DETECTION
                + [
                    "SEARCH.POPULATION",
                    2,
                    "SEARCH.GENERATIONS",
                    1,
                    "SEARCH.TOPK",
                    1,
                    "SEARCH.NUM_MUTATION",
                    0,
                    "SEARCH.NUM_CROSSOVER",
                    0,
                    "SEARCH.FLOPS_LIMIT",
                    0.0,
                ],
            },
            "retrain": {
                "config": os.path.join(SHAPES, "supernet_fpn.yaml"),
                "opts": TINY + DETECTION + ["SOLVER.MAX_ITER", 2],
            },
            "evaluate": {},
            "reference": {
                "config": os.path.join(SHAPES, "faster_rcnn_R18_FPN.yaml"),
                "opts": TINY[2:] + DETECTION + ["SOLVER.MAX_ITER", finetune_iters + 2],  # fine-tune + retrain
            },
        },
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def run_pipeline(path, env):
    return subprocess.run(
        [sys.executable, "-m", "detnas_d2.pipeline", "--config-file", path],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def start_pipeline(path, env):
    """The pipeline of ``path`` running in the background, in a process group of its own, output discarded."""
    return subprocess.Popen(
        [sys.executable, "-m", "detnas_d2.pipeline", "--config-file", path],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "DETNAS_DATA": str(tmp_path / "data"), "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}


def test_pipeline_end_to_end_then_nothing_redone(tmp_path, env):
    path = write_pipeline(tmp_path)
    first = run_pipeline(path, env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = tmp_path / "out"
    report = (out / "report.md").read_text()
    for stage in ("pretrain", "finetune", "search", "retrain", "evaluate", "reference"):
        assert f"## {stage}" in report
    assert "best architecture" in report and "bbox: AP" in report
    assert "| reference (stock detectron2) | from scratch | 6 |" in report
    assert "at equal detection iterations (6 each)" in report  # a ratio, or "the reference's AP is 0"
    assert "Stage times (wall minutes" in report and "total" in report
    assert (out / "retrain" / "model_final.pth").is_file() and (out / "evaluate" / "final_metrics.json").is_file()
    mtimes = {p: p.stat().st_mtime for p in out.rglob("*") if p.is_file() and p.name not in ("report.md", LOCK_FILE)}
    second = run_pipeline(path, env)
    assert second.returncode == 0
    assert "starting" not in second.stdout and "resuming" not in second.stdout
    assert second.stdout.count("done already") == 6
    assert {p: p.stat().st_mtime for p in mtimes} == mtimes
    assert (out / "report.md").read_text() == report


def test_pipeline_killed_mid_stage_resumes_that_stage(tmp_path, env):
    path = write_pipeline(tmp_path, finetune_iters=60)
    finetune = tmp_path / "out" / "finetune"
    proc = start_pipeline(path, env)
    deadline = time.time() + 300
    while not (finetune / "last_checkpoint").is_file() and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (finetune / "last_checkpoint").is_file() and not (finetune / "model_final.pth").is_file()
    resumed = run_pipeline(path, env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "[pipeline] pretrain: done already" in resumed.stdout
    assert "[pipeline] finetune: resuming" in resumed.stdout
    log = (finetune / "log.txt").read_text()
    assert "Resuming from iteration" in log or "Loading from" in log


def test_bad_pipeline_files_fail_clearly(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"stages": {"pretrain": {"config": "nope.yaml"}}}))
    with pytest.raises(PipelineError, match="stage 'pretrain' config .*nope.yaml does not exist"):
        load_pipeline(str(path))
    path.write_text(yaml.safe_dump({"stages": {"warmup": {}}}))
    with pytest.raises(PipelineError, match=r"unknown stage\(s\) \['warmup'\]"):
        load_pipeline(str(path))


@pytest.mark.unit
def test_a_stage_is_done_only_when_all_its_outputs_are_readable(tmp_path, monkeypatch):
    """What a full disk leaves: a truncated model_final.pth, a search with best_arch.json but no best_weights.pth.
    Both stages run again, and the retrain starts from the search's export, never from other weights."""
    spec = load_pipeline(write_pipeline(tmp_path))
    spec["stages"] = {name: spec["stages"][name] for name in ("pretrain", "finetune", "search", "retrain")}
    out = tmp_path / "out"
    for name in ("pretrain", "finetune", "search"):
        (out / name).mkdir(parents=True)
    torch.save({"model": {}}, out / "pretrain" / "model_final.pth")
    (out / "finetune" / "model_final.pth").write_bytes(b"PK\x03\x04")  # truncated
    exported = str(out / "search" / "best_weights.pth")
    (out / "search" / "best_arch.json").write_text('{"arch": [0, 1], "fitness": 1.0, "costs": {}}')
    (out / "search" / "best_config.yaml").write_text(yaml.safe_dump({"MODEL": {"WEIGHTS": exported}}))
    runs = []

    def run_stage(self, name, module, config, opts, extra=()):
        runs.append((name, dict(zip(opts[::2], opts[1::2])).get("MODEL.WEIGHTS")))
        path = exported if name == "search" else self._weights(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.save({"model": {}}, path)

    monkeypatch.setattr(Pipeline, "_run", run_stage)
    monkeypatch.setattr(Pipeline, "_arch_opts", staticmethod(lambda best: []))
    Pipeline(spec, str(out), []).run()
    finetuned = str(out / "finetune" / "model_final.pth")
    assert runs == [
        ("finetune", str(out / "pretrain" / "model_final.pth")),
        ("search", finetuned),
        ("retrain", exported),
    ]


def test_a_killed_pipeline_ends_its_stage_and_keeps_its_time(tmp_path, env):
    """kill -9 of the pipeline ends the stage it runs; the killed run's time stays in the report; a second
    pipeline into the same folder is refused before it runs (or times) anything."""
    path = write_pipeline(tmp_path, finetune_iters=100000)
    out, finetune = tmp_path / "out", tmp_path / "out" / "finetune"
    proc = start_pipeline(path, env)
    try:
        deadline = time.time() + 300
        while not (finetune / "last_checkpoint").is_file() and time.time() < deadline:
            time.sleep(0.1)
        second = run_pipeline(path, env)
        assert second.returncode != 0 and f"{out} is in use by another run: pid {proc.pid}" in second.stderr
        assert "[pipeline] finetune" not in second.stdout
        stage = int((finetune / LOCK_FILE).read_text().split()[1])  # "pid P on host H (since T)"
        os.kill(proc.pid, signal.SIGKILL)  # the pipeline alone, not its process group
        proc.wait()
        deadline = time.time() + 120
        while os.path.exists(f"/proc/{stage}") and "zombie" not in _state(stage) and time.time() < deadline:
            time.sleep(0.2)
        assert not os.path.exists(f"/proc/{stage}") or "zombie" in _state(stage), "the stage outlived the pipeline"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
    assert json.loads((finetune / STAGE_TIME).read_text())["runs"][0] > 0
    report = open(Pipeline(load_pipeline(path), str(out), []).write_report()).read()
    assert re.search(r"finetune (\d+\.\d+)", report) and float(re.search(r"finetune (\d+\.\d+)", report)[1]) > 0


def _state(pid):
    """The state line of /proc/<pid>/status ("" once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(line for line in f if line.startswith("State:")).lower()
    except OSError:
        return ""


def test_the_report_gives_no_ratio_at_unequal_detection_iterations(tmp_path):
    stages = {
        name: {"config": "x", "opts": []} for name in ("pretrain", "finetune", "retrain", "evaluate", "reference")
    }
    pipeline = Pipeline({"stages": stages}, str(tmp_path), [])
    for name, iters in (("pretrain", 600), ("finetune", 300), ("retrain", 300), ("reference", 300)):
        os.makedirs(pipeline.stage_dir(name))
        yaml.safe_dump(
            {"SOLVER": {"MAX_ITER": iters}}, open(os.path.join(pipeline.stage_dir(name), "config.yaml"), "w")
        )
    pipeline.summary = {
        "evaluate": {"results": {"bbox": {"AP": 19.5}}},
        "reference": {"results": {"bbox": {"AP": 8.1}}},
    }
    report = open(pipeline.write_report()).read()
    assert "| 600 | 19.50 |" in report and "| from scratch | 300 | 8.10 |" in report
    assert "Unequal detection iterations (600 vs 300): no ratio" in report and "Searched / reference" not in report
