"""One-shot supernet training: identical paths on every rank, untouched unsampled candidates, exact resume."""

import json
import os
import re

import torch
from detectron2.config import get_cfg
from detectron2.engine import HookBase, launch
from detectron2.utils import comm

import detnas_d2  # noqa: F401
from detnas_d2.config import add_detnas_config
from detnas_d2.engine import Trainer
from detnas_d2.parts.model import unwrap
from interrupted_run import run_with_kill
from presets import SUPERNET_CONFIG, TRAIN_ONLY_16_AT_64

TINY = [
    "MODEL.DETNAS.WIDTH_MULT",
    "0.25",
    "MODEL.FPN.OUT_CHANNELS",
    "16",
    "MODEL.ROI_BOX_HEAD.CONV_DIM",
    "16",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "32",
    "SOLVER.WEIGHT_DECAY",
    "0.01",
    "SOLVER.MOMENTUM",
    "0.9",
    "SOLVER.WARMUP_ITERS",
    "0",
    "SOLVER.BASE_LR",
    "0.05",
    "MODEL.DETNAS.WEIGHT_SHARING",
    "none",  # independent candidates: each one off the path must stay bit-identical
]
CANDIDATE = re.compile(r"\.blocks\.(\d+)\.choices\.(\d+)\.")


class UnsampledCandidatesCheck(HookBase):
    """Snapshots the model before each step and, after it, lists candidate tensors off the path that changed."""

    def __init__(self):
        self.changed, self.paths, self.checked = [], [], 0

    def before_step(self):
        self.before = {k: v.detach().clone() for k, v in unwrap(self.trainer.model).state_dict().items()}

    def after_step(self):
        path = self.trainer._hooks[1].current  # PathSamplingHook follows RNGStateHook
        self.paths.append(list(path))
        for key, value in unwrap(self.trainer.model).state_dict().items():
            match = CANDIDATE.search(key)
            if match and int(match.group(2)) != path[int(match.group(1))]:
                self.checked += 1
                if not torch.equal(value, self.before[key]):
                    self.changed.append((self.trainer.iter, key))


def _train_and_check(out, data_root, iters):
    os.environ["DETNAS_DATA"] = data_root
    cfg = add_detnas_config(get_cfg())
    cfg.merge_from_file(SUPERNET_CONFIG)
    cfg.merge_from_list(
        TINY
        + [
            "SOLVER.MAX_ITER",
            str(iters),
            "SOLVER.IMS_PER_BATCH",
            str(2 * comm.get_world_size()),
            "SUPERNET.LOG_PATHS",
            "True",
            *TRAIN_ONLY_16_AT_64,
            "OUTPUT_DIR",
            out,
        ]
    )
    trainer = Trainer(cfg)
    check = UnsampledCandidatesCheck()
    trainer.register_hooks([check])
    trainer.resume_or_load(resume=False)
    trainer.train()
    with open(os.path.join(out, f"check_rank{comm.get_rank()}.json"), "w") as f:
        json.dump({"changed": check.changed, "paths": check.paths, "checked": check.checked}, f)


def _read(out, rank):
    with open(os.path.join(out, f"check_rank{rank}.json")) as f:
        return json.load(f)


def test_unsampled_candidates_untouched_single_process(tmp_path):
    out = str(tmp_path / "out")
    _train_and_check(out, str(tmp_path / "data"), iters=4)
    result = _read(out, 0)
    assert result["checked"] > 0 and result["changed"] == []
    assert len({tuple(p) for p in result["paths"]}) == 4


def test_two_process_gloo_ranks_share_paths_and_untouched_candidates(tmp_path):
    out = str(tmp_path / "out")
    launch(_train_and_check, 2, dist_url="auto", args=(out, str(tmp_path / "data"), 3))
    ranks = [_read(out, r) for r in (0, 1)]
    assert ranks[0]["paths"] == ranks[1]["paths"] and len(ranks[0]["paths"]) == 3
    for r in ranks:
        assert r["checked"] > 0 and r["changed"] == []
    logged = []
    for r in (0, 1):
        with open(os.path.join(out, f"paths_rank{r}.jsonl")) as f:
            logged.append([json.loads(line) for line in f])
    assert logged[0] == logged[1] and [e["arch"] for e in logged[0]] == ranks[0]["paths"]


class PathRecorder(HookBase):
    def __init__(self, log):
        self.log = log

    def after_step(self):
        self.log[self.trainer.iter] = list(self.trainer._hooks[1].current)


def test_supernet_resume_repeats_paths_and_losses(tmp_path, monkeypatch):
    paths = {"a": {}, "b": {}}

    def recorders(trainer):
        run = "a" if trainer.cfg.OUTPUT_DIR.endswith("a") else "b"
        return [PathRecorder(paths[run])]

    full, resumed, _, _ = run_with_kill(tmp_path, monkeypatch, "configs/shapes/supernet_fpn.yaml", TINY, recorders)
    assert [resumed[i] for i in (3, 4, 5)] == [full[i] for i in (3, 4, 5)]
    assert [paths["b"][i] for i in (3, 4, 5)] == [paths["a"][i] for i in (3, 4, 5)]
