"""train_net.py wiring: a stock detectron2 model trains on shapes, in one process and in two CPU (gloo) processes."""

import json
import os

import pytest

import train_net
from presets import STOCK_CONFIG, STOCK_TINY


def _iterations_logged(out):
    with open(os.path.join(out, "metrics.json")) as f:
        return [json.loads(line)["iteration"] for line in f if '"total_loss"' in line]


@pytest.mark.parametrize("num_procs", [1, 2])
def test_stock_model_trains_on_shapes(tmp_path, monkeypatch, num_procs):
    monkeypatch.setenv("DETNAS_DATA", str(tmp_path / "data"))
    out = str(tmp_path / "out")
    argv = [
        "--config-file",
        STOCK_CONFIG,
        "--num-gpus",
        str(num_procs),
        "--dist-url",
        "auto",
        *STOCK_TINY,
        "SOLVER.IMS_PER_BATCH",
        str(2 * num_procs),
        "OUTPUT_DIR",
        out,
    ]
    train_net.cli(argv)
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    assert _iterations_logged(out)[-1] == 2


@pytest.mark.unit
def test_config_naming_missing_dataset_fails_clearly(tmp_path):
    argv = [
        "--config-file",
        STOCK_CONFIG,
        *STOCK_TINY,
        "OUTPUT_DIR",
        str(tmp_path),
        "DATASETS.TRAIN",
        "('no_such_set',)",
    ]
    with pytest.raises(KeyError, match="DATASETS.TRAIN names dataset 'no_such_set'"):
        train_net.cli(argv)
