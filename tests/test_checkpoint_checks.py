"""Checkpoints that cannot serve: unreadable files are named, ``--resume`` falls back past a truncated last
checkpoint, and backbone tensors of another width are an error on every load path, never silently skipped."""

import errno
import logging
import os
import re
import shutil

import pytest
import torch
from detectron2.config import get_cfg

import detnas_d2  # noqa: F401
from detnas_d2.config import add_detnas_config
from detnas_d2.engine import Trainer
from detnas_d2.modeling.checkpoint import DetNASCheckpointer
from presets import SHAPES

SMALL_HEADS = [
    "MODEL.DETNAS.NORM",
    "BN",
    "MODEL.FPN.OUT_CHANNELS",
    "16",
    "MODEL.ROI_BOX_HEAD.CONV_DIM",
    "16",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "32",
]


def _model(config, width, *opts):
    cfg = add_detnas_config(get_cfg())
    cfg.merge_from_file(os.path.join(SHAPES, config))
    cfg.merge_from_list(["MODEL.DETNAS.WIDTH_MULT", str(width), *opts])
    return Trainer.build_model(cfg)


def _save(model, folder, name, **extra):
    DetNASCheckpointer(model, save_dir=str(folder)).save(name, **extra)
    return os.path.join(str(folder), f"{name}.pth")


def _truncate(path):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


# ------------------------------------------------------------------------------------ unreadable files
def _plain(value):
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    torch.nn.init.constant_(model[0].weight, value)
    return model


@pytest.mark.parametrize("damage", ["truncated", "text", "empty"])
def test_unreadable_weights_name_the_file_and_what_to_do(tmp_path, damage):
    path = _save(_plain(1.0), tmp_path, "weights")
    if damage == "truncated":
        _truncate(path)
    else:
        with open(path, "w") as f:
            f.write("12 not a checkpoint\n" if damage == "text" else "")
    with pytest.raises(ValueError, match=rf"cannot read checkpoint {re.escape(path)}: .* truncated .* MODEL\.WEIGHTS"):
        DetNASCheckpointer(_plain(0.0)).resume_or_load(path, resume=False)


def test_a_checkpoint_without_weights_is_named(tmp_path):
    path = str(tmp_path / "list.pth")
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match=rf"cannot read checkpoint {re.escape(path)}: .*not a dict of weights"):
        DetNASCheckpointer(_plain(0.0)).resume_or_load(path, resume=False)


def test_resume_falls_back_past_a_truncated_last_checkpoint(tmp_path, caplog):
    _save(_plain(2.0), tmp_path, "model_0000002", iteration=2)
    last = _save(_plain(5.0), tmp_path, "model_0000005", iteration=5)
    _truncate(last)
    model = _plain(0.0)
    with caplog.at_level(logging.WARNING):
        extra = DetNASCheckpointer(model, save_dir=str(tmp_path)).resume_or_load("", resume=True)
    assert extra["iteration"] == 2 and torch.all(model[0].weight == 2.0)
    assert any(last in r.getMessage() and "model_0000002.pth" in r.getMessage() for r in caplog.records)

    _truncate(os.path.join(tmp_path, "model_0000002.pth"))
    with pytest.raises(ValueError, match="no readable checkpoint to resume from"):
        DetNASCheckpointer(_plain(0.0), save_dir=str(tmp_path)).resume_or_load("", resume=True)


# ------------------------------------------------------------------------------ backbone of another width
@pytest.fixture(scope="module")
def quarter_width(tmp_path_factory):
    """Checkpoints of a quarter-width supernet classifier and supernet detector."""
    folder = tmp_path_factory.mktemp("quarter")
    return {
        "classifier": _save(_model("supernet_cls.yaml", 0.25), folder, "classifier"),
        "detector": _save(_model("supernet_fpn.yaml", 0.25, *SMALL_HEADS), folder, "detector"),
    }


SHAPE_ERROR = (
    r"checkpoint .*{name}\.pth: \d+ backbone tensors do not fit this model: "
    r"'backbone\.[\w.]+' is \(\d+(, \d+)*\) in the checkpoint but \(\d+(, \d+)*\) in the "
    r"model.*MODEL\.DETNAS\.WIDTH_MULT"
)


@pytest.mark.parametrize(
    "source, arch",
    [
        ("detector", ""),  # training MODEL.WEIGHTS (a supernet detector)
        ("classifier", ""),  # the classifier -> detector mapping
        ("detector", "COCO-FPN-300M"),  # retraining a fixed network from a supernet checkpoint
    ],
)
def test_backbone_of_another_width_fails_naming_key_and_both_shapes(quarter_width, source, arch):
    half = _model("supernet_fpn.yaml", 0.5, "MODEL.DETNAS.ARCH", arch, *SMALL_HEADS)
    with pytest.raises(ValueError, match=SHAPE_ERROR.format(name=source)):
        DetNASCheckpointer(half).resume_or_load(quarter_width[source], resume=False)


def test_same_width_loads_and_intentional_drops_stay_allowed(quarter_width):
    detector = _model("supernet_fpn.yaml", 0.25, "MODEL.ROI_HEADS.NUM_CLASSES", "3", *SMALL_HEADS)
    before = {key: value.clone() for key, value in detector.state_dict().items()}
    DetNASCheckpointer(detector).resume_or_load(quarter_width["classifier"], resume=False)  # head dropped
    loaded = [key for key, value in detector.state_dict().items() if not torch.equal(value, before[key])]
    assert loaded and all(key.startswith("backbone.") for key in loaded)  # the classifier's body, nothing else
    DetNASCheckpointer(detector).resume_or_load(quarter_width["detector"], resume=False)  # other class count
    saved, state = torch.load(quarter_width["detector"], map_location="cpu")["model"], detector.state_dict()
    assert set(saved) == set(state)
    not_loaded = {key for key in state if not torch.equal(state[key], saved[key])}
    assert not_loaded == {key for key in state if state[key].shape != saved[key].shape}
    assert not_loaded and all(key.startswith("roi_heads.box_predictor.") for key in not_loaded)


def _no_space(*args):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["before", "during"], ids=["too-little-free", "enospc-while-writing"])
def test_full_disk_write_keeps_the_old_checkpoint(tmp_path, monkeypatch, where):
    """A checkpoint that does not fit stops with the folder and the bytes needed; the previous checkpoint stays
    the last one and no truncated file takes a checkpoint's name."""
    monkeypatch.setattr(logging, "raiseExceptions", True)  # restored after the DiskFullError switched it off
    checkpointer = DetNASCheckpointer(torch.nn.Linear(64, 64), save_dir=str(tmp_path))
    checkpointer.save("model_0000000")
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    if where == "before":
        monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**6, 10**6 - 100, 100))
    else:
        monkeypatch.setattr(os, "fsync", _no_space)
    with pytest.raises(OSError, match=rf"no space left in {tmp_path} to write model_0000001.pth: it needs \d+ bytes"):
        checkpointer.save("model_0000001")
    assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before


def test_weights_that_name_a_folder_say_so(tmp_path):
    (tmp_path / "model_final.pth").write_bytes(b"")
    with pytest.raises(ValueError, match=f"checkpoint {tmp_path} is a directory.*MODEL.WEIGHTS.*model_final.pth"):
        DetNASCheckpointer(torch.nn.Linear(2, 2)).load(str(tmp_path))
