"""The "not learning" alarm: a flat loss after warm-up is flagged (and recorded for the pipeline's report)."""

import json
import math
import os
from types import SimpleNamespace

import pytest
import torch
from detectron2.config import get_cfg

from detnas_d2.config import add_detnas_config
from detnas_d2.engine.learning_alarm import ALARM_FILE, LearningAlarmHook
from detnas_d2.pipeline import Pipeline


class _Storage:
    def __init__(self):
        self.loss = None

    def latest(self):
        return {"total_loss": (self.loss, 0)}


def _run(tmp_path, losses, meta="GeneralizedRCNN", weights="", warmup=5, **alarm):
    cfg = add_detnas_config(get_cfg())
    cfg.MODEL.WEIGHTS = weights
    cfg.MODEL.META_ARCHITECTURE = meta
    cfg.MODEL.CLASSIFIER.NUM_CLASSES = 5
    cfg.SOLVER.WARMUP_ITERS = warmup
    alarm = {"WINDOW": 5, "PATIENCE": 1, **alarm}  # the shipped defaults where a test passes them explicitly
    for key, value in alarm.items():
        cfg.TRAIN_ALARM[key] = value
    cfg.OUTPUT_DIR = str(tmp_path)
    os.makedirs(tmp_path, exist_ok=True)
    hook = LearningAlarmHook(cfg)
    storage = _Storage()
    hook.trainer = SimpleNamespace(storage=storage, iter=0, start_iter=0)
    hook.before_train()
    for i, loss in enumerate(losses):
        hook.trainer.iter, storage.loss = i, loss
        hook.after_step()
    hook.after_train()
    path = tmp_path / ALARM_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def test_a_classifier_at_the_chance_loss_raises_the_alarm_after_warm_up(tmp_path):
    alarm = _run(tmp_path, [math.log(5) + 0.01] * 30, meta="SupernetClassifier")
    assert alarm["iter"] == 9  # START_ITER -1 = 2 x 5 warm-up iterations
    assert "chance loss ln(K) = 1.609" in alarm["reason"] and alarm["recovered"] is False


def test_a_flat_detection_loss_raises_it_and_a_later_drop_is_recorded_as_recovery(tmp_path):
    alarm = _run(tmp_path, [1.0] * 20 + [0.3] * 10)
    assert "has not fallen below 0.95 x its starting value 1.000" in alarm["reason"]
    assert alarm["recovered"] is True


def test_a_falling_loss_raises_nothing(tmp_path):
    assert _run(tmp_path, [1.0 / (1 + i) for i in range(30)]) is None
    assert not os.path.exists(tmp_path / ALARM_FILE)


def test_a_loss_that_rises_during_warm_up_is_measured_from_its_peak(tmp_path):
    # RetinaNet on shapes: 1.27 in the first window, 1.57 during warm-up, 1.31 when the check starts, then falling
    rises_then_falls = [1.27] * 5 + [1.57] * 5 + [1.31] * 10 + [0.9] * 10
    assert _run(tmp_path / "a", rises_then_falls, START_ITER=20) is None
    alarm = _run(tmp_path / "b", [1.27] * 5 + [1.57] * 5 + [1.55] * 20, START_ITER=20)
    assert alarm["iter"] == 19 and "its starting value 1.570" in alarm["reason"]


def test_the_pipeline_report_flags_a_stage_that_did_not_learn(tmp_path):
    stage = tmp_path / "pretrain"
    stage.mkdir()
    _run(stage, [1.0] * 30)
    pipeline = Pipeline({"stages": {"pretrain": {"config": "x", "opts": []}}}, str(tmp_path), [])
    report = open(pipeline.write_report()).read()
    assert "**WARNING: NOT LEARNING** at iteration 9 (never recovered)" in report


def _demo_pretraining_curve():
    """The shape of the demo's classification pretraining loss (issue 18): label smoothing and a 50-iteration
    warm-up at LR 0.05 push the 20-iteration median from ln 5 up to 2.093 at iteration 99, then it falls below
    chance and ends near 0.9 (69.9 % top-1 after 600 iterations). Per-iteration values, noise included."""
    knots = [(0, 1.62), (50, 1.70), (99, 2.10), (130, 1.95), (180, 1.55), (260, 1.25), (400, 1.02), (599, 0.90)]
    losses = []
    for i in range(600):
        (a, la), (b, lb) = next(((p, q) for p, q in zip(knots, knots[1:]) if p[0] <= i <= q[0]))
        losses.append(la + (lb - la) * (i - a) / (b - a) + 0.08 * math.sin(1.7 * i))
    return losses


def test_a_classifier_that_overshoots_chance_in_warm_up_and_then_learns_is_not_reported(tmp_path):
    stage = tmp_path / "pretrain"
    stage.mkdir()
    shipped = {"WINDOW": 20, "PATIENCE": 100}
    assert _run(stage, _demo_pretraining_curve(), meta="SupernetClassifier", warmup=50, **shipped) is None
    pipeline = Pipeline({"stages": {"pretrain": {"config": "x", "opts": []}}}, str(tmp_path), [])
    assert "NOT LEARNING" not in open(pipeline.write_report()).read()
    # the same run stuck at chance is still caught, PATIENCE iterations after the check starts
    stuck = [math.log(5) + 0.05 * math.sin(i) for i in range(600)]
    alarm = _run(tmp_path / "stuck", stuck, meta="SupernetClassifier", warmup=50, **shipped)
    assert alarm["iter"] == 99 + 99 and alarm["recovered"] is False


def test_a_recovered_stage_is_a_note_not_a_warning(tmp_path):
    stage = tmp_path / "pretrain"
    stage.mkdir()
    _run(stage, [1.0] * 20 + [0.3] * 10)
    pipeline = Pipeline({"stages": {"pretrain": {"config": "x", "opts": []}}}, str(tmp_path), [])
    report = open(pipeline.write_report()).read()
    assert "NOT LEARNING" not in report and "slow start: at iteration 9" in report


def test_bad_window_is_named(tmp_path):
    with pytest.raises(ValueError, match="TRAIN_ALARM.WINDOW must be >= 1"):
        _run(tmp_path, [], WINDOW=0)


def test_a_detector_fine_tuned_from_a_whole_detector_is_not_held_to_a_loss_drop(tmp_path):
    whole, backbone_only = str(tmp_path / "whole.pth"), str(tmp_path / "backbone.pth")
    torch.save({"model": {"backbone.w": torch.zeros(1), "roi_heads.w": torch.zeros(1)}}, whole)
    torch.save({"model": {"backbone.w": torch.zeros(1), "classifier_head.w": torch.zeros(1)}}, backbone_only)
    assert _run(tmp_path / "a", [0.45] * 30, weights=whole) is None
    assert _run(tmp_path / "b", [0.45] * 30, weights=backbone_only)["iter"] == 9
