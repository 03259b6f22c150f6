"""AutoAugment v0 end to end through train_net.py: Faster R-CNN and RetinaNet train on shapes with the policy on."""

import json
import os

import pytest

import train_net
from detnas_d2.data.autoaugment import AutoAugment
from detnas_d2.data.autoaugment.policies import resolve_policy
from detnas_d2.data.mappers import AutoAugmentDatasetMapper, build_train_mapper
from detnas_d2.engine import trainer as trainer_module
from presets import SHAPES, TRAIN_AT_64, shapes_images

MAX_ITER, BATCH = 3, 2
TINY = [
    "SOLVER.MAX_ITER",
    str(MAX_ITER),
    "SOLVER.IMS_PER_BATCH",
    str(BATCH),
    "SOLVER.CHECKPOINT_PERIOD",
    "100",
    "SOLVER.WARMUP_ITERS",
    "1",
    "SOLVER.STEPS",
    "()",
    "MODEL.FPN.OUT_CHANNELS",
    "16",
    "DATALOADER.NUM_WORKERS",
    "0",
    "TEST.EVAL_PERIOD",
    "0",
    "DATASETS.TEST",
    "()",
    *shapes_images(8, 4, 4, image_size=64),
    *TRAIN_AT_64,
]
FASTER_RCNN = [os.path.join(SHAPES, "faster_rcnn_autoaug.yaml"), "MODEL.ROI_BOX_HEAD.FC_DIM", "32"]
RETINANET = [
    os.path.join(SHAPES, "supernet_retinanet.yaml"),
    "MODEL.DETNAS.ARCH",
    "COCO-RetinaNet-300M",
    "MODEL.DETNAS.WIDTH_MULT",
    "0.25",
    "INPUT.AUTOAUGMENT.ENABLED",
    "True",
    "INPUT.AUTOAUGMENT.POLICY",
    "v0",
]


@pytest.mark.parametrize("config", [FASTER_RCNN, RETINANET], ids=["faster_rcnn", "retinanet"])
def test_v0_policy_trains_end_to_end(config, tmp_path, monkeypatch):
    monkeypatch.setenv("DETNAS_DATA", str(tmp_path / "data"))
    policies, mappers = [], []
    original_augment = AutoAugment.__call__

    def recording_augment(self, aug_input):
        policies.append(self.policy)
        return original_augment(self, aug_input)

    def recording_build(cfg):
        mappers.append(build_train_mapper(cfg))
        return mappers[-1]

    monkeypatch.setattr(AutoAugment, "__call__", recording_augment)
    monkeypatch.setattr(trainer_module, "build_train_mapper", recording_build)
    out = str(tmp_path / "out")
    train_net.cli(["--config-file", config[0], *TINY, *config[1:], "OUTPUT_DIR", out])

    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    with open(os.path.join(out, "metrics.json")) as f:
        iterations = [json.loads(line)["iteration"] for line in f if '"total_loss"' in line]
    assert iterations[-1] == MAX_ITER - 1
    # the Trainer built its loader's mapper through data.mappers.build_train_mapper, which picked AutoAugment ...
    assert [type(m) for m in mappers] == [AutoAugmentDatasetMapper]
    assert mappers[0].is_train and mappers[0].autoaugment.policy == resolve_policy("v0")
    # ... and every training image went through AutoAugment v0 (the loader may prefetch one batch more)
    assert MAX_ITER * BATCH <= len(policies) <= (MAX_ITER + 1) * BATCH
    assert all(policy == resolve_policy("v0") for policy in policies)
