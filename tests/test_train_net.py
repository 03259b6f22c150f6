"""train_net.py wiring: a stock detectron2 model trains on shapes, in one process and in two CPU (gloo) processes."""
import json
import os

import pytest

import train_net

TINY = [
    "SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.CHECKPOINT_PERIOD", "100",
    "MODEL.FPN.OUT_CHANNELS", "16", "MODEL.ROI_BOX_HEAD.FC_DIM", "32", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
    "DATALOADER.NUM_WORKERS", "0", "TEST.EVAL_PERIOD", "0",
    "DATASETS.SHAPES.NUM_TRAIN", "8", "DATASETS.SHAPES.NUM_SEARCH", "4", "DATASETS.SHAPES.NUM_VAL", "4",
    "DATASETS.SHAPES.IMAGE_SIZE", "64", "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64",
]
CONFIG = os.path.join(train_net.__file__.rsplit(os.sep, 1)[0], "configs", "shapes", "faster_rcnn_R18_FPN.yaml")


def _iterations_logged(out):
    with open(os.path.join(out, "metrics.json")) as f:
        return [json.loads(line)["iteration"] for line in f if '"total_loss"' in line]


@pytest.mark.parametrize("num_procs", [1, 2])
def test_stock_model_trains_on_shapes(tmp_path, monkeypatch, num_procs):
    monkeypatch.setenv("DETNAS_DATA", str(tmp_path / "data"))
    out = str(tmp_path / "out")
    argv = ["--config-file", CONFIG, "--num-gpus", str(num_procs), "--dist-url", "auto",
            *TINY, "SOLVER.IMS_PER_BATCH", str(2 * num_procs), "OUTPUT_DIR", out]
    train_net.cli(argv)
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    assert _iterations_logged(out)[-1] == 2


def test_config_naming_missing_dataset_fails_clearly(tmp_path):
    argv = ["--config-file", CONFIG, *TINY, "OUTPUT_DIR", str(tmp_path), "DATASETS.TRAIN", "('no_such_set',)"]
    with pytest.raises(KeyError, match="DATASETS.TRAIN names dataset 'no_such_set'"):
        train_net.cli(argv)
