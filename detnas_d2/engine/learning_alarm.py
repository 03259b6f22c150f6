"""A "not learning" alarm: warn loudly when the training loss does not fall after warm-up.

A one-shot supernet whose paths do not agree trains at the chance loss for thousands of steps while everything
else looks normal (the loss is finite, the LR schedule runs, checkpoints are written). This hook compares the
median training loss of the last ``TRAIN_ALARM.WINDOW`` iterations, once past ``TRAIN_ALARM.START_ITER``, with

- the chance loss ln(K) of a K-class classifier (``loss_cls`` of the SupernetClassifier), and
- for any model trained from scratch or from a backbone (not from a checkpoint that already holds its heads, and
  not resumed), the highest window median before the check starts (the first window's, unless the loss rose during
  warm-up, as RetinaNet's focal loss does): a loss still at or above ``TRAIN_ALARM.MIN_DROP`` times that starting
  value has not learned. A detector fine-tuned from a whole trained detector starts low and may rightly
  stay there, so it is only checked against chance where that applies.

Either must hold at every iteration of a span of ``TRAIN_ALARM.PATIENCE`` iterations: a loss that overshoots
during warm-up (a classifier with label smoothing can rise well above ln(K) before it falls) and comes down within
that span is not flagged. Then the alarm logs a warning and writes ``OUTPUT_DIR/not_learning.json``; a run whose
final median lies clearly below the bar (``MIN_DROP`` times it) gets ``"recovered": true`` there, and the
pipeline's report flags only the runs that never recovered.
"""

import json
import logging
import math
import os
from statistics import median
from typing import List

import torch
from detectron2.engine import HookBase
from detectron2.utils import comm

from ..utils.io import atomic_write

ALARM_FILE = "not_learning.json"
#: key prefixes of detector heads (two-stage, single-stage, classifier): a checkpoint holding any was trained whole
HEAD_PREFIXES = ("roi_heads.", "proposal_generator.", "head.", "classifier_head.")


def holds_trained_heads(weights: str, meta_architecture: str) -> bool:
    """True if the checkpoint ``weights`` has head weights of the model being trained (its loss starts low)."""
    if not weights or not os.path.isfile(weights):
        return False
    checkpoint = torch.load(weights, map_location="cpu")
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else {}
    own_heads = ("classifier_head.",) if meta_architecture == "SupernetClassifier" else HEAD_PREFIXES[:3]
    return any(str(key).startswith(own_heads) for key in state)


def chance_loss(cfg) -> float | None:
    """ln(K) for a K-class SupernetClassifier (the loss of a uniform prediction, with or without label smoothing)."""
    if cfg.MODEL.META_ARCHITECTURE == "SupernetClassifier":
        return math.log(cfg.MODEL.CLASSIFIER.NUM_CLASSES)
    return None


class LearningAlarmHook(HookBase):
    """Watch ``total_loss`` (and ``loss_cls`` against chance for classifiers); alarm once, as the module says."""

    def __init__(self, cfg):
        node = cfg.TRAIN_ALARM
        self.window = int(node.WINDOW)
        if self.window < 1:
            raise ValueError(f"TRAIN_ALARM.WINDOW must be >= 1, got {node.WINDOW}")
        start = node.START_ITER if node.START_ITER >= 0 else 2 * cfg.SOLVER.WARMUP_ITERS
        self.start_iter = max(int(start), self.window)
        self.min_drop = float(node.MIN_DROP)
        self.patience = int(node.PATIENCE)
        if self.patience < 1:
            raise ValueError(f"TRAIN_ALARM.PATIENCE must be >= 1, got {node.PATIENCE}")
        self.held = 0  # consecutive checked iterations at which the loss had not learned
        self.relative = not holds_trained_heads(cfg.MODEL.WEIGHTS, cfg.MODEL.META_ARCHITECTURE)
        self.chance = chance_loss(cfg)
        self.path = os.path.join(cfg.OUTPUT_DIR, ALARM_FILE)
        self.first: List[float] = []
        self.start_loss: float | None = None  # highest window median before start_iter
        self.recent: List[float] = []
        self.raised: dict | None = None

    def before_train(self):
        if self.trainer.start_iter > 0:  # resumed: the first window seen is not the starting loss
            self.relative = False

    def after_step(self):
        losses = self.trainer.storage.latest()
        if "total_loss" not in losses:
            return
        loss = float(losses["total_loss"][0])
        if len(self.first) < self.window:
            self.first.append(loss)
        self.recent = (self.recent + [loss])[-self.window :]
        if self.trainer.iter + 1 < self.start_iter:
            if len(self.recent) == self.window:
                self.start_loss = max(self.start_loss or -math.inf, median(self.recent))
            return
        if self.raised is not None:
            return
        reason = self._reason(median(self.recent))
        self.held = self.held + 1 if reason else 0
        if reason and self.held >= self.patience:
            self._raise(reason)

    def _reason(self, current: float, margin: float = 1.0) -> str | None:
        """Why a window median of ``current`` has not learned (None if it has); ``margin`` < 1 asks for a loss
        clearly below each bar (the recovery test)."""
        if self.chance is not None and current >= margin * self.chance:
            return f"median training loss {current:.3f} is at or above the chance loss ln(K) = {self.chance:.3f}"
        start = self.start_loss if self.start_loss is not None else median(self.first)
        if self.relative and current >= margin * self.min_drop * start:
            return (
                f"median training loss {current:.3f} has not fallen below {self.min_drop} x its starting value "
                f"{start:.3f}"
            )
        return None

    def _raise(self, reason: str) -> None:
        self.raised = {"iter": self.trainer.iter, "reason": reason, "recovered": False}
        logging.getLogger(__name__).warning(
            f"NOT LEARNING at iteration {self.trainer.iter}: {reason}. Check the learning rate, the data and, for a "
            "supernet, MODEL.DETNAS.WEIGHT_SHARING / ZERO_INIT_LAST_NORM (README: 'Why the supernet learns') or "
            "MODEL.NASFPN.LEVEL_RESIDUAL / OUTPUT_NORM_INIT (README: 'Joint search')"
        )
        self._write()

    def after_train(self):
        if self.raised is not None and self.recent and self._reason(median(self.recent), self.min_drop) is None:
            self.raised["recovered"] = True
            self._write()

    def _write(self) -> None:
        if comm.is_main_process():
            atomic_write(self.path, json.dumps(self.raised, indent=1))
