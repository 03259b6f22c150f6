"""The one-command pipeline: end to end on tiny shapes settings, nothing redone on a rerun, resume after a kill."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from detnas_d2.pipeline import PipelineError, load_pipeline
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
                "opts": TINY[2:] + DETECTION + ["SOLVER.MAX_ITER", 2],
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
    assert "| reference (stock detectron2) |" in report and "Searched / reference AP" in report
    assert "Stage times (wall minutes" in report and "total" in report
    assert (out / "retrain" / "model_final.pth").is_file() and (out / "evaluate" / "final_metrics.json").is_file()
    mtimes = {p: p.stat().st_mtime for p in out.rglob("*") if p.is_file() and p.name != "report.md"}
    second = run_pipeline(path, env)
    assert second.returncode == 0
    assert "starting" not in second.stdout and "resuming" not in second.stdout
    assert second.stdout.count("done already") == 6
    assert {p: p.stat().st_mtime for p in mtimes} == mtimes
    assert (out / "report.md").read_text() == report


def test_pipeline_killed_mid_stage_resumes_that_stage(tmp_path, env):
    path = write_pipeline(tmp_path, finetune_iters=60)
    finetune = tmp_path / "out" / "finetune"
    proc = subprocess.Popen(
        [sys.executable, "-m", "detnas_d2.pipeline", "--config-file", path],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
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
