"""Configs written with renamed keys still load, read under the new names, with a warning naming both; every area's
``add_*_config`` declares its keys once (idempotent) and the new training-time evaluation keys keep the defaults."""

import contextlib
import logging
import os
from typing import Iterator, List

from detectron2.config import get_cfg

from detnas_d2.config import RENAMED_KEYS, add_detnas_config, merge_from_file, merge_from_list

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OLD_NECK_CONFIG = """\
_BASE_: "{base}"
MODEL:
  NASFPN:
    BOTTOM_UP: "build_detnas_backbone"
    IN_FEATURES: ["res2", "res3", "res4"]
    CHANNELS: 48
"""


@contextlib.contextmanager
def warnings_of_config() -> Iterator[List[str]]:
    """The messages ``detnas_d2.config`` logs inside the block (a handler on that logger: detectron2's
    ``setup_logger`` in other tests stops ``detnas_d2`` records from reaching the root logger)."""
    messages: List[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("detnas_d2.config")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def test_old_neck_keys_in_a_file_load_as_the_new_ones(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text(OLD_NECK_CONFIG.format(base=os.path.join(REPO_ROOT, "configs", "shapes", "nasfpn_retinanet.yaml")))
    cfg = add_detnas_config(get_cfg())
    with warnings_of_config() as messages:
        merge_from_file(cfg, str(path))
    assert (cfg.MODEL.NECK.BOTTOM_UP, cfg.MODEL.NECK.IN_FEATURES) == ("build_detnas_backbone", ["res2", "res3", "res4"])
    assert cfg.MODEL.NASFPN.CHANNELS == 48 and cfg.MODEL.NASFPN.NUM_REPEATS == 2  # the rest of file and base
    assert "BOTTOM_UP" not in cfg.MODEL.NASFPN and "IN_FEATURES" not in cfg.MODEL.NASFPN
    for old, new in RENAMED_KEYS.items():
        assert any(old in message and new in message for message in messages), (old, messages)


def test_old_neck_keys_on_the_command_line_load_as_the_new_ones():
    cfg = add_detnas_config(get_cfg())
    with warnings_of_config() as messages:
        merge_from_list(cfg, ["MODEL.NASFPN.BOTTOM_UP", "build_detnas_backbone", "MODEL.NASFPN.CHANNELS", "64"])
    assert (cfg.MODEL.NECK.BOTTOM_UP, cfg.MODEL.NASFPN.CHANNELS) == ("build_detnas_backbone", 64)
    assert any("MODEL.NASFPN.BOTTOM_UP was renamed to MODEL.NECK.BOTTOM_UP" in message for message in messages)


def test_a_current_file_merges_as_detectron2_merges_it():
    path = os.path.join(REPO_ROOT, "configs", "shapes", "search_nasfpn.yaml")
    ours, theirs = add_detnas_config(get_cfg()), add_detnas_config(get_cfg())
    merge_from_file(ours, path)
    theirs.merge_from_file(path)
    assert ours == theirs and ours.MODEL.NECK.BOTTOM_UP == "build_detnas_backbone"


def test_training_time_evaluation_has_its_own_recalibration_keys():
    cfg = add_detnas_config(get_cfg())
    ours, search = cfg.SUPERNET.EVAL.BN_RECALIB, cfg.SEARCH.BN_RECALIB
    assert (ours.NUM_BATCHES, ours.BATCH_SIZE, ours.MODE, ours.MOMENTUM, ours.SEED) == (
        search.NUM_BATCHES,
        search.BATCH_SIZE,
        search.MODE,
        search.MOMENTUM,
        cfg.SEARCH.SEED,
    )
    ours.NUM_BATCHES = 3
    add_detnas_config(cfg)  # idempotent: keeps what is set
    assert cfg.SUPERNET.EVAL.BN_RECALIB.NUM_BATCHES == 3 and cfg.SEARCH.BN_RECALIB.NUM_BATCHES == 500


def test_the_command_lines_load_an_old_config(tmp_path):
    from detnas_d2.cli.defaults import argument_parser, load_cfg, parse_command_line

    path = tmp_path / "old.yaml"
    path.write_text(OLD_NECK_CONFIG.format(base=os.path.join(REPO_ROOT, "configs", "shapes", "nasfpn_retinanet.yaml")))
    args = parse_command_line(argument_parser(), ["--config-file", str(path), "MODEL.NASFPN.IN_FEATURES", "['res3']"])
    cfg = load_cfg(args)
    assert (cfg.MODEL.NECK.BOTTOM_UP, cfg.MODEL.NECK.IN_FEATURES) == ("build_detnas_backbone", ["res3"])
