"""Kill-and-resume: the second half of a resumed run repeats an uninterrupted run exactly, with any number of
data-loader workers."""

import itertools
import json
import os
import random
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2.data.samplers import TrainingSampler

from detnas_d2.data.resumable_loader import PositionChunks, ResumableTrainLoader, SeededSampleMapper
from interrupted_run import run_with_kill
from presets import REPO


def test_resumed_run_repeats_uninterrupted_losses(tmp_path, monkeypatch):
    full, resumed, _, _ = run_with_kill(
        tmp_path,
        monkeypatch,
        "configs/shapes/faster_rcnn_R18_FPN.yaml",
        ["MODEL.FPN.OUT_CHANNELS", "16", "MODEL.ROI_BOX_HEAD.FC_DIM", "32"],
    )
    assert sorted(resumed) == [3, 4, 5]
    assert [resumed[i] for i in (3, 4, 5)] == [full[i] for i in (3, 4, 5)]


def random_draws(record):
    """A mapper whose output depends on the python, numpy and torch global RNGs."""
    return {**record, "draws": (random.random(), float(np.random.rand()), float(torch.rand(1)))}


def mixed_aspect_loader(workers):
    """A loader over 10 records, every third one taller than wide, in batches of 2 grouped by aspect ratio."""
    records = [{"image_id": i, "width": 20 if i % 3 == 0 else 40, "height": 30} for i in range(10)]
    chunks = PositionChunks(TrainingSampler(len(records), seed=3), SeededSampleMapper(records, random_draws, 5, 0), 2)
    return ResumableTrainLoader(chunks, 2, num_workers=workers, aspect_ratio_grouping=True, loader_seed=5)


@pytest.mark.unit
@pytest.mark.parametrize("workers", [0, 2])
def test_loader_state_resumes_samples_waiting_in_aspect_groups(workers):
    uninterrupted = list(itertools.islice(iter(mixed_aspect_loader(0)), 9))
    first = mixed_aspect_loader(workers)
    batches = iter(first)
    head = [next(batches) for _ in range(3)]
    state = first.state_dict()
    del batches
    assert any(state["waiting"]), "the cut should leave a sample waiting in an aspect group"
    resumed = mixed_aspect_loader(workers)
    resumed.load_state_dict(state)
    assert head + list(itertools.islice(iter(resumed), 6)) == uninterrupted


# ------------------------------------------------------------------ kill -9 and --resume, real processes
SUPERNET_RUN = [
    "MODEL.DETNAS.WIDTH_MULT",
    "0.25",
    "MODEL.FPN.OUT_CHANNELS",
    "16",
    "MODEL.ROI_BOX_HEAD.CONV_DIM",
    "16",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "32",
    "SOLVER.WARMUP_ITERS",
    "0",
    "SOLVER.MAX_ITER",
    "4",
    "SOLVER.CHECKPOINT_PERIOD",
    "2",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "TEST.EVAL_PERIOD",
    "0",
    "DATASETS.TEST",
    "()",
    "DATASETS.SHAPES.NUM_TRAIN",
    "12",
    "DATASETS.SHAPES.IMAGE_SIZE",
    "64",
    "INPUT.MIN_SIZE_TRAIN",
    "(64,)",
    "INPUT.MAX_SIZE_TRAIN",
    "64",
    "INPUT.AUTOAUGMENT.ENABLED",
    "True",
    "SUPERNET.LOG_PATHS",
    "True",
]
KILL_AT = 3  # the checkpoint after iteration 1 is the last one before the kill: iteration 2 is trained twice
# train_net.py whose process SIGKILLs itself before iteration $DETNAS_TEST_KILL_AT (loader workers prefetch ahead)
KILLED_TRAIN_NET = """
import os, signal, sys
from detectron2.engine import HookBase
from detnas_d2.cli.train import cli
from detnas_d2.engine import Trainer

class KillAt(HookBase):
    def before_step(self):
        if self.trainer.iter == int(os.environ["DETNAS_TEST_KILL_AT"]):
            os.kill(os.getpid(), signal.SIGKILL)

build_hooks = Trainer.build_hooks
Trainer.build_hooks = lambda self: build_hooks(self) + [KillAt()]
cli(sys.argv[1:])
"""


def train_net(out, data, workers, *extra, kill_at=None):
    """Run train_net.py (or the self-killing variant) on the tiny supernet; return the finished process."""
    env = {**os.environ, "DETNAS_DATA": str(data), "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    program = ["-c", KILLED_TRAIN_NET] if kill_at is not None else [os.path.join(REPO, "train_net.py")]
    if kill_at is not None:
        env["DETNAS_TEST_KILL_AT"] = str(kill_at)
    args = [
        "--config-file",
        os.path.join(REPO, "configs/shapes/supernet_fpn.yaml"),
        *extra,
        *SUPERNET_RUN,
        "DATALOADER.NUM_WORKERS",
        str(workers),
        "OUTPUT_DIR",
        str(out),
    ]
    return subprocess.run([sys.executable, *program, *args], env=env, capture_output=True, text=True, timeout=600)


def final_weights(out):
    return torch.load(os.path.join(out, "model_final.pth"), map_location="cpu")["model"]


def logged_paths(out):
    with open(os.path.join(out, "paths_rank0.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """(output folder, data folder) of an uninterrupted run with two loader workers."""
    root = tmp_path_factory.mktemp("uninterrupted")
    done = train_net(root / "out", root / "data", 2)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "out", root / "data"


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_kill_and_resume_with_loader_workers_gives_the_uninterrupted_weights(uninterrupted, tmp_path, workers):
    reference, data = uninterrupted
    out = tmp_path / "out"
    killed = train_net(out, data, workers, kill_at=KILL_AT)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (out / "model_0000001.pth").is_file() and not (out / "model_final.pth").exists()
    resumed = train_net(out, data, workers, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Starting training from iteration 2" in (out / "log.txt").read_text()
    expected, got = final_weights(reference), final_weights(out)
    assert sorted(got) == sorted(expected)
    differing = [key for key in expected if not torch.equal(expected[key], got[key])]
    assert differing == [], f"{len(differing)} of {len(expected)} tensors differ, e.g. {differing[:3]}"
    assert logged_paths(out) == logged_paths(reference)
    assert [entry["iter"] for entry in logged_paths(out)] == [0, 1, 2, 3]
