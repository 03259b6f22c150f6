"""Inputs that used to go silently wrong or fail obscurely: VOC scoring, COCO boxes outside their image, bad
boxes in AutoAugment, supernet evaluation with no path, and width multipliers too small for the backbone."""

import json
import logging
import os

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from detectron2.data.datasets.pascal_voc import CLASS_NAMES as VOC_CLASSES
from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator
from detectron2.structures import Boxes, Instances

import detnas_d2  # noqa: F401
from detnas_d2.config import add_detnas_config
from detnas_d2.data.autoaugment import build_op
from detnas_d2.data.datasets import register_from_config
from detnas_d2.data.registration import register_coco, register_voc
from detnas_d2.engine import Trainer
from detnas_d2.evaluation import ClassificationEvaluator
from own_datasets import SIZE, write_coco_dataset, write_voc_dataset
from presets import SHAPES, shapes_images


def _cfg(config, *opts):
    cfg = add_detnas_config(get_cfg())
    cfg.merge_from_file(os.path.join(SHAPES, config))
    cfg.merge_from_list(list(opts))
    return cfg


# -------------------------------------------------------------------------------------------- evaluators
def _perfect_detections(objects):
    """detectron2 outputs equal to a VOC image's ground truth (VOC boxes are 1-based, inclusive)."""
    instances = Instances((SIZE, SIZE))
    instances.pred_boxes = Boxes(torch.tensor([[a - 1.0, b - 1.0, c, d] for _, a, b, c, d in objects]))
    instances.scores = torch.ones(len(objects))
    instances.pred_classes = torch.tensor([VOC_CLASSES.index(name) for name, *_ in objects])
    return {"instances": instances}


def _add_voc_object_fields(voc):
    """Give every object the <pose> and <truncated> fields of real VOC files (detectron2's VOC metric reads them)."""
    folder = os.path.join(voc, "Annotations")
    for name in os.listdir(folder):
        with open(os.path.join(folder, name)) as f:
            xml = f.read()
        with open(os.path.join(folder, name), "w") as f:
            f.write(xml.replace("<difficult>", "<pose>Unspecified</pose><truncated>0</truncated><difficult>"))


def test_voc_datasets_are_scored_with_the_voc_metric_of_their_year(tmp_path):
    voc, boxes = write_voc_dataset(str(tmp_path), num_images=3)
    _add_voc_object_fields(voc)
    register_voc("checks_voc2007", voc, "trainval")
    cfg = _cfg("faster_rcnn_R18_FPN.yaml", "OUTPUT_DIR", str(tmp_path / "out"))
    evaluator = Trainer.build_evaluator(cfg, "checks_voc2007")
    assert isinstance(evaluator, PascalVOCDetectionEvaluator) and evaluator._is_2007  # 11-point metric
    evaluator.reset()
    for file_id, objects in boxes.items():
        evaluator.process([{"image_id": file_id}], [_perfect_detections(objects)])
    present = {name for objects in boxes.values() for name, *_ in objects}
    # perfect on the classes present, 0 on the other VOC classes: a COCO-style score would differ
    assert evaluator.evaluate()["bbox"]["AP50"] == pytest.approx(100.0 * len(present) / len(VOC_CLASSES))

    voc2012 = os.path.join(tmp_path, "VOC2012")
    os.rename(voc, voc2012)
    register_voc("checks_voc2012", voc2012, "trainval")
    assert not Trainer.build_evaluator(cfg, "checks_voc2012")._is_2007


def test_coco_and_classification_datasets_keep_their_evaluators(tmp_path, monkeypatch):
    monkeypatch.setenv("DETNAS_DATA", str(tmp_path / "data"))
    cfg = _cfg("faster_rcnn_R18_FPN.yaml", "OUTPUT_DIR", str(tmp_path), *shapes_images(2, 2, 2, image_size=64))
    register_from_config(cfg)  # this test may run first in its process (pytest -n)
    assert isinstance(Trainer.build_evaluator(cfg, "shapes_val"), COCOEvaluator)
    assert isinstance(Trainer.build_evaluator(cfg, "shapes_cls_val"), ClassificationEvaluator)


# ------------------------------------------------------------------------------------ boxes off the image
def _coco_with_extra_boxes(tmp_path, name, extra, caplog):
    """Register a small COCO dataset whose first image has the ``extra`` XYWH boxes too and load it twice:
    (number of annotations in the file, loaded records, the warnings naming the dataset)."""
    json_file, image_dir = write_coco_dataset(str(tmp_path), num_images=2)
    with open(json_file) as f:
        coco = json.load(f)
    for i, box in enumerate(extra):
        coco["annotations"].append(
            {"id": 1000 + i, "image_id": 100, "category_id": 3, "bbox": box, "area": box[2] * box[3], "iscrowd": 0}
        )
    with open(json_file, "w") as f:
        json.dump(coco, f)
    register_coco(name, json_file, image_dir)
    with caplog.at_level(logging.WARNING):
        dicts = DatasetCatalog.get(name)
        DatasetCatalog.get(name)
    return len(coco["annotations"]), dicts, [r.getMessage() for r in caplog.records if name in r.getMessage()]


def test_coco_boxes_outside_their_image_are_clipped_or_dropped_with_one_warning(tmp_path, caplog):
    extra = [
        [-6, 10, 20, 20],
        [SIZE - 10, 50, 30, 30],  # partly outside: clipped
        [SIZE + 5, 0, 10, 10],
        [-30, -30, 10, 10],
    ]  # entirely outside: dropped
    num_annotations, dicts, warnings = _coco_with_extra_boxes(tmp_path, "checks_outside", extra, caplog)
    assert len(warnings) == 1, warnings
    assert "2 boxes extend past their image and were clipped" in warnings[0]
    assert "2 boxes lie entirely outside their image and were dropped" in warnings[0]
    boxes = [a["bbox"] for d in dicts for a in d["annotations"]]
    assert len(boxes) == num_annotations - 2
    assert [0, 10, 14, 20] in boxes and [SIZE - 10, 50, 10, SIZE - 50] in boxes
    assert all(x >= 0 and y >= 0 and x + w <= SIZE and y + h <= SIZE for x, y, w, h in boxes)


# -------------------------------------------------------------------------------- AutoAugment bad boxes
BOX_OPS = ["BBox_Cutout"] + [
    f"{op}_Only_BBoxes"
    for op in ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "Flip", "Solarize", "Equalize", "Cutout")
]
IMAGE = np.random.default_rng(0).integers(0, 256, size=(48, 48, 3), dtype=np.uint8)


@pytest.mark.parametrize("box_mode", ["drop", "reference"])
@pytest.mark.parametrize("name", BOX_OPS)
def test_nan_boxes_fail_naming_the_op_and_the_box(name, box_mode):
    op = build_op(name, 1.0, 6, box_mode=box_mode)
    boxes = np.array([[4, 4, 20, 20], [5, np.nan, 30, 30]], dtype=np.float64)
    with pytest.raises(ValueError, match=rf"AutoAugment op {name}: box \[5\.0, nan, 30\.0, 30\.0\] has a NaN"):
        op.get_transform(IMAGE, boxes)


@pytest.mark.parametrize("box_mode", ["drop", "reference"])
@pytest.mark.parametrize("name", BOX_OPS)
def test_inverted_boxes_are_skipped(name, box_mode):
    op = build_op(name, 1.0, 6, box_mode=box_mode)
    for _ in range(5):
        transform = op.get_transform(IMAGE, np.array([[30.5, 30.5, 10.2, 10.2]]))
        assert isinstance(transform, T.NoOpTransform)


# ------------------------------------------------------------------------------------------ model config
def test_supernet_evaluation_needs_at_least_one_path(tmp_path):
    cfg = _cfg(
        "supernet_fpn.yaml",
        "MODEL.DETNAS.WIDTH_MULT",
        "0.25",
        "SUPERNET.EVAL.NUM_PATHS",
        "0",
        "OUTPUT_DIR",
        str(tmp_path),
    )
    model = Trainer.build_model(cfg)
    message = r"SUPERNET\.EVAL\.NUM_PATHS = 0: .*integer >= 1"
    with pytest.raises(ValueError, match=message):
        Trainer.test(cfg, model)
    with pytest.raises(ValueError, match=message):
        Trainer(cfg)
    cfg.SUPERNET.EVAL.NUM_PATHS = 1
    assert len(Trainer.eval_paths(cfg, model)) == 1


def test_width_multiplier_too_small_names_the_smallest_allowed_value():
    with pytest.raises(
        ValueError,
        match=r"MODEL\.DETNAS\.WIDTH_MULT = 0\.01: the width multiplier .*small "
        r"supernet.*smallest width multiplier allowed is 0\.09375",
    ):
        Trainer.build_model(_cfg("supernet_fpn.yaml", "MODEL.DETNAS.WIDTH_MULT", "0.01"))
    with pytest.raises(
        ValueError,
        match=r"MODEL\.DETNAS\.WIDTH_MULT = 0\.0: "
        r"the width multiplier must be a positive number",
    ):
        Trainer.build_model(_cfg("supernet_fpn.yaml", "MODEL.DETNAS.WIDTH_MULT", "0.0"))
    Trainer.build_model(
        _cfg(
            "supernet_fpn.yaml",
            "MODEL.DETNAS.WIDTH_MULT",
            "0.09375",
            "MODEL.FPN.OUT_CHANNELS",
            "16",
            "MODEL.ROI_BOX_HEAD.CONV_DIM",
            "16",
        )
    )


def test_coco_boxes_without_area_are_dropped_everywhere_with_one_warning(tmp_path, caplog):
    """[10, 10, 0, 0] and [30, 30, -10, 5] are neither trained on, counted nor kept as ground truth: a perfect
    detector scores 100 AP."""
    extra = [[10, 10, 0, 0], [30, 30, -10, 5]]
    num_annotations, dicts, warnings = _coco_with_extra_boxes(tmp_path, "checks_empty", extra, caplog)
    assert len(warnings) == 1, warnings
    assert "2 boxes have no area (zero or negative width or height) and were dropped" in warnings[0]
    assert sum(len(d["annotations"]) for d in dicts) == num_annotations - 2
    evaluator = COCOEvaluator("checks_empty", output_dir=str(tmp_path / "eval"))
    evaluator.reset()
    for record in dicts:
        instances = Instances((record["height"], record["width"]))
        xyxy = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in record["annotations"])]
        instances.pred_boxes = Boxes(torch.tensor(xyxy, dtype=torch.float32))
        instances.scores = torch.ones(len(xyxy))
        instances.pred_classes = torch.tensor([a["category_id"] for a in record["annotations"]])
        evaluator.process([{"image_id": record["image_id"]}], [{"instances": instances}])
    assert evaluator.evaluate()["bbox"]["AP"] == pytest.approx(100.0)
