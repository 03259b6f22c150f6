"""A training run 'killed' before an iteration and resumed from its last checkpoint, next to an uninterrupted run of
the same config: the losses (and any extra hooks' records) of both, for the exact-resume tests."""

import os

import pytest
from detectron2.config import get_cfg
from detectron2.engine import HookBase
from detectron2.utils.env import seed_all_rng

import detnas_d2  # noqa: F401
from detnas_d2.config import add_detnas_config
from detnas_d2.engine import Trainer
from presets import REPO, TRAIN_ONLY_16_AT_64


class Killed(Exception):
    """Stops a run where a kill would."""


class Recorder(HookBase):
    """Records the total loss of every iteration; optionally 'kills' the run before iteration ``kill_at``."""

    def __init__(self, log, kill_at=None):
        self.log, self.kill_at = log, kill_at

    def before_step(self):
        if self.trainer.iter == self.kill_at:
            raise Killed()

    def after_step(self):
        self.log[self.trainer.iter] = self.trainer.storage.history("total_loss").latest()


def _cfg(out, config, overrides):
    """The config of one run; seeds global RNGs as ``default_setup`` does in train_net.py."""
    seed_all_rng(0)
    cfg = add_detnas_config(get_cfg())
    cfg.merge_from_file(os.path.join(REPO, config))
    cfg.merge_from_list(
        [
            "SOLVER.MAX_ITER",
            "6",
            "SOLVER.CHECKPOINT_PERIOD",
            "3",
            "SOLVER.IMS_PER_BATCH",
            "2",
            *TRAIN_ONLY_16_AT_64,
            "OUTPUT_DIR",
            out,
            *overrides,
        ]
    )
    return cfg


def run_with_kill(tmp_path, monkeypatch, config, overrides, extra_hooks=lambda trainer: []):
    """Return (losses uninterrupted, losses of the resumed second half, the two trainers)."""
    monkeypatch.setenv("DETNAS_DATA", str(tmp_path / "data"))
    full, resumed = {}, {}
    a = Trainer(_cfg(str(tmp_path / "a"), config, overrides))
    a.register_hooks([Recorder(full)] + extra_hooks(a))
    a.resume_or_load(resume=False)
    a.train()

    b = Trainer(_cfg(str(tmp_path / "b"), config, overrides))
    b.register_hooks([Recorder({}, kill_at=4)] + extra_hooks(b))
    b.resume_or_load(resume=False)
    with pytest.raises(Killed):
        b.train()
    c = Trainer(_cfg(str(tmp_path / "b"), config, overrides))
    c.register_hooks([Recorder(resumed)] + extra_hooks(c))
    c.resume_or_load(resume=True)
    assert c.start_iter == 3
    c.train()
    return full, resumed, a, c
