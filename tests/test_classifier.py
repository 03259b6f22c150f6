"""DetNAS step 1: supernet classifier, classification data path and evaluator, linear LR, and loading the
classifier's body into detectors (DetNASCheckpointer)."""

import os
import re

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2 import model_zoo
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.solver import build_lr_scheduler as build_detectron2_lr_scheduler
from detectron2.solver import build_optimizer

import detnas_d2  # noqa: F401
from detnas_d2.config import add_detnas_config
from detnas_d2.data.classification import (
    ClassificationMapper,
    RandomResizedCrop,
    RandomSaturationInFormat,
    build_test_loader_for,
    is_classification_dataset,
)
from detnas_d2.data.datasets import ensure_imagenet_registered, register_image_folder
from detnas_d2.engine import Trainer
from detnas_d2.engine.lr_scheduler import build_lr_scheduler
from detnas_d2.evaluation import ClassificationEvaluator
from detnas_d2.modeling import find_detnas_backbone
from detnas_d2.modeling.checkpoint import DetNASCheckpointer, map_detnas_weights
from detnas_d2.modeling.classifier import CLASSIFIER_HEAD_PREFIX
from detnas_d2.modeling.config import add_classifier_config
from detnas_d2.space.backbone import get_architecture

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES_CONFIG = os.path.join(REPO_ROOT, "configs", "shapes", "supernet_cls.yaml")
IMAGENET_CONFIG = os.path.join(REPO_ROOT, "configs", "supernet_imagenet.yaml")
PATH = [0, 1, 2, 3] * 5


def _cfg(config_file=SHAPES_CONFIG, **overrides):
    """The classifier config from ``config_file`` with the plugin's keys declared (twice: idempotent)."""
    cfg = get_cfg()
    add_detnas_config(cfg)
    add_classifier_config(cfg)
    add_classifier_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.DETNAS.WIDTH_MULT = 0.25
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split("__")
        for name in parents:
            node = node[name]
        node[leaf] = value
    return cfg


def _batch(size=48, n=4, num_classes=5):
    torch.manual_seed(0)
    return [
        {"image": torch.randint(0, 256, (3, size, size), dtype=torch.uint8), "label": i % num_classes} for i in range(n)
    ]


# ------------------------------------------------------------------------------------------------- model
def test_supernet_classifier_loss_is_label_smoothed_cross_entropy_and_eval_gives_logits():
    model = build_model(_cfg(MODEL__CLASSIFIER__LABEL_SMOOTHING=0.3))
    names = list(model.state_dict())
    assert all(k.startswith(("backbone.body.", CLASSIFIER_HEAD_PREFIX)) for k in names)
    assert any(k.startswith("backbone.body.blocks.19.choices.3.") for k in names)  # all candidates
    batch = _batch()
    with pytest.raises(RuntimeError, match="path not set"):
        model(batch)
    find_detnas_backbone(model).set_arch(PATH)
    torch.manual_seed(1)
    loss = model(batch)["loss_cls"]
    torch.manual_seed(1)  # same dropout draw, train-mode BN: the same logits
    logits = model.classifier_head(model.backbone(model.preprocess_image(batch))["res5"])
    labels = torch.tensor([item["label"] for item in batch])
    assert torch.equal(loss, F.cross_entropy(logits, labels, label_smoothing=0.3))
    assert not torch.allclose(loss, F.cross_entropy(logits, labels))
    model.eval()
    outputs = model(batch)
    assert len(outputs) == 4 and all(out["logits"].shape == (5,) for out in outputs)


def test_fixed_architecture_classifier():
    model = build_model(_cfg(MODEL__DETNAS__ARCH="COCO-FPN-300M"))
    backbone = find_detnas_backbone(model)
    assert not backbone.is_supernet and backbone.arch == get_architecture("COCO-FPN-300M").encoding
    model.eval()
    assert model(_batch(n=2))[0]["logits"].shape == (5,)
    with pytest.raises(ValueError, match="set_arch needs a supernet"):
        backbone.set_arch(PATH)


def test_classifier_rejects_bad_input():
    with pytest.raises(ValueError, match="LABEL_SMOOTHING must be in"):
        build_model(_cfg(MODEL__CLASSIFIER__LABEL_SMOOTHING=1.0))
    model = build_model(_cfg())
    find_detnas_backbone(model).set_arch(PATH)
    with pytest.raises(ValueError, match="equally sized images"):
        model(_batch(size=48, n=1) + _batch(size=32, n=1))
    with pytest.raises(ValueError, match="needs a 'label'"):
        model([{"image": item["image"]} for item in _batch(n=2)])


# -------------------------------------------------------------------------------------------------- data
@pytest.fixture
def image_folder(tmp_path):
    """``root/<class>/<n>.png``: classes "b_cls" and "a_cls" (sorted: a_cls = 0), 40x60 random images."""
    rng = np.random.default_rng(0)
    root = tmp_path / "folder"
    for name, count in (("b_cls", 2), ("a_cls", 1)):
        os.makedirs(root / name)
        for i in range(count):
            cv2.imwrite(str(root / name / f"{i}.png"), rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    return str(root)


def test_image_folder_and_mapper(image_folder):
    register_image_folder("test_cls_folder", image_folder)
    try:
        dicts = DatasetCatalog.get("test_cls_folder")
        assert [(os.path.basename(os.path.dirname(d["file_name"])), d["label"]) for d in dicts] == [
            ("a_cls", 0),
            ("b_cls", 1),
            ("b_cls", 1),
        ]
        assert MetadataCatalog.get("test_cls_folder").classes == ["a_cls", "b_cls"]
        assert is_classification_dataset("test_cls_folder")
        cfg = _cfg(INPUT__CLS_CROP_SIZE=24, INPUT__CLS_RESIZE_SIZE=30)
        train = ClassificationMapper(cfg, is_train=True)(dicts[1])
        assert train["image"].shape == (3, 24, 24) and train["image"].dtype == torch.uint8
        assert (train["label"], train["image_id"]) == (1, dicts[1]["image_id"])
        evaluate = ClassificationMapper(cfg, is_train=False)
        first, second = evaluate(dicts[0]), evaluate(dicts[0])
        assert torch.equal(first["image"], second["image"])
        # by hand: short side 40 -> 30 (60 -> 45) with cv2 bilinear, then the central 24x24
        resized = cv2.resize(cv2.imread(dicts[0]["file_name"]), (45, 30), interpolation=cv2.INTER_LINEAR)
        expected = resized[3:27, 10:34]
        assert torch.equal(first["image"], torch.from_numpy(expected.transpose(2, 0, 1).copy()))
        with pytest.raises(ValueError, match="needs an integer 'label'.*is this a detection dataset"):
            evaluate({"file_name": dicts[0]["file_name"], "image_id": 0, "annotations": []})
        batches = list(build_test_loader_for(cfg.clone(), "test_cls_folder"))
        assert [len(b) for b in batches] == [3]  # TEST.CLS_IMS_PER_BATCH images per batch
    finally:
        DatasetCatalog.remove("test_cls_folder")
        MetadataCatalog.remove("test_cls_folder")


def test_eval_resize_must_cover_the_crop():
    with pytest.raises(ValueError, match="CLS_RESIZE_SIZE=40 must be >= INPUT.CLS_CROP_SIZE=48"):
        ClassificationMapper(_cfg(INPUT__CLS_RESIZE_SIZE=40), is_train=False)


def test_random_resized_crop_boxes_stay_inside_and_respect_the_ratio():
    np.random.seed(0)
    aug = RandomResizedCrop(16, scale=(0.2, 1.0), ratio=(0.5, 2.0))
    for _ in range(200):
        x0, y0, w, h = aug.sample_box(30, 50)
        assert 0 <= x0 and x0 + w <= 50 and 0 <= y0 and y0 + h <= 30 and w > 0 and h > 0
    # no draw can fit a 1:9 strip into a 3:1 ratio range: the fallback is the widest centred 3:1 box
    assert RandomResizedCrop(8, scale=(1.0, 1.0), ratio=(3.0, 3.0)).sample_box(90, 10) == (0, 43, 10, 3)
    with pytest.raises(ValueError, match="scale must be"):
        RandomResizedCrop(8, scale=(0.5, 0.1))


def test_saturation_uses_the_luma_weights_of_the_image_format():
    red = np.zeros((1, 1, 3), dtype=np.uint8)
    for fmt, red_channel in (("BGR", 2), ("RGB", 0)):
        image = red.copy()
        image[..., red_channel] = 200
        gray = RandomSaturationInFormat(0.0, 0.0, fmt).get_transform(image).apply_image(image)
        assert gray.tolist() == [[[59, 59, 59]]]  # 0.299 * 200 = 59.8, truncated by the uint8 cast
    with pytest.raises(ValueError, match="INPUT.FORMAT 'RGB' or 'BGR'"):
        RandomSaturationInFormat(0.6, 1.4, "L")


def test_imagenet_splits_register_on_demand_or_name_the_missing_folder(tmp_path, monkeypatch, image_folder):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "datasets"))
    for name in ("imagenet_train", "imagenet_val"):
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
    missing = os.path.join(str(tmp_path / "datasets"), "imagenet", "val")
    with pytest.raises(FileNotFoundError, match=f"DATASETS.TEST names dataset 'imagenet_val'.*{re.escape(missing)}"):
        ensure_imagenet_registered("imagenet_val", "DATASETS.TEST")
    ensure_imagenet_registered("shapes_cls_val", "DATASETS.TEST")  # not an ImageNet name: no-op
    os.makedirs(tmp_path / "datasets" / "imagenet")
    os.symlink(image_folder, tmp_path / "datasets" / "imagenet" / "train")
    os.makedirs(tmp_path / "datasets" / "imagenet" / "val" / "b_cls")  # val lacks a_cls: labels from train
    cv2.imwrite(str(tmp_path / "datasets" / "imagenet" / "val" / "b_cls" / "x.png"), np.zeros((4, 4, 3), np.uint8))
    try:
        ensure_imagenet_registered("imagenet_val", "DATASETS.TEST")
        assert [d["label"] for d in DatasetCatalog.get("imagenet_train")] == [0, 1, 1]
        assert MetadataCatalog.get("imagenet_train").classes == ["a_cls", "b_cls"]
        with pytest.raises(FileNotFoundError, match="a_cls"):
            DatasetCatalog.get("imagenet_val")
    finally:
        for name in ("imagenet_train", "imagenet_val"):
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)


# --------------------------------------------------------------------------------------------- evaluator
def test_classification_evaluator_top1_top5():
    evaluator = ClassificationEvaluator("hand_made", distributed=False)
    logits = torch.tensor(
        [
            [9.0, 1, 2, 3, 4, 5, 6],  # label 0: rank 0 -> top-1 and top-5
            [9.0, 8, 7, 6, 5, 4, 3],  # label 4: 4 classes higher -> top-5 only
            [9.0, 8, 7, 6, 5, 4, 3],  # label 5: 5 higher -> neither
            [1.0, 2, 2, 0, 0, 0, 0],  # label 1: tie with class 2 counts for the true class -> top-1
        ]
    )
    evaluator.process([{"label": label} for label in (0, 4, 5, 1)], [{"logits": row} for row in logits])
    assert evaluator.evaluate() == {"classification": {"top1": 50.0, "top5": 75.0}}

    evaluator = ClassificationEvaluator("three_classes")  # distributed=True in one process
    evaluator.process([{"label": 2}, {"label": 0}], [{"logits": torch.tensor([3.0, 2, 1])}] * 2)
    assert evaluator.evaluate() == {"classification": {"top1": 50.0, "top5": 100.0}}  # top-5 capped at 3
    with pytest.raises(ValueError, match=r"label must be an int in \[0, 3\), got 3"):
        evaluator.process([{"label": 3, "image_id": 7}], [{"logits": torch.zeros(3)}])


# ---------------------------------------------------------------------------------------------- schedule
def _lrs(cfg, iterations):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=cfg.SOLVER.BASE_LR)
    scheduler = build_lr_scheduler(cfg, optimizer)
    lrs = []
    for _ in range(iterations):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_warmup_linear_lr_decays_linearly_to_zero():
    cfg = _cfg()
    cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.WARMUP_FACTOR = 0.5, 100, 10, 0.1
    lrs = _lrs(cfg, 101)
    expected = {0: 0.05, 5: 0.05 + 0.5 * (0.45 - 0.05), 10: 0.45, 40: 0.3, 75: 0.125, 99: 0.005, 100: 0.0}
    assert {i: lrs[i] for i in expected} == pytest.approx(expected, abs=1e-9)
    cfg.SOLVER.WARMUP_ITERS = 0  # the ImageNet recipe: no warm-up
    assert _lrs(cfg, 3) == pytest.approx([0.5, 0.495, 0.49])
    cfg.SOLVER.LR_SCHEDULER_NAME, cfg.SOLVER.STEPS = "WarmupMultiStepLR", (50,)  # delegated to detectron2
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    assert type(build_lr_scheduler(cfg, optimizer)) is type(build_detectron2_lr_scheduler(cfg, optimizer))


def test_imagenet_recipe_decays_only_conv_and_linear_weights():
    cfg = _cfg(IMAGENET_CONFIG, MODEL__CLASSIFIER__NUM_CLASSES=10)
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.SOLVER.IMS_PER_BATCH) == (0.5, 300000, 1024)
    assert (cfg.MODEL.CLASSIFIER.LABEL_SMOOTHING, cfg.SOLVER.LR_SCHEDULER_NAME) == (0.1, "WarmupLinearLR")
    model = build_model(cfg)
    groups = build_optimizer(cfg, model).param_groups
    decay = {id(param): group["weight_decay"] for group in groups for param in group["params"]}
    for name, param in model.named_parameters():
        assert decay[id(param)] == (4e-5 if param.ndim > 1 else 0.0), name


# ------------------------------------------------------------------------------------------- checkpoints
DETECTORS = {
    "build_detnas_fpn_backbone": "COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml",
    "build_detnas_retinanet_backbone": "COCO-Detection/retinanet_R_50_FPN_1x.yaml",
}


def _detector(builder, arch=""):
    cfg = get_cfg()
    add_detnas_config(cfg)
    cfg.merge_from_file(model_zoo.get_config_file(DETECTORS[builder]))
    cfg.MODEL.BACKBONE.NAME = builder
    cfg.MODEL.DETNAS.ARCH = arch
    cfg.MODEL.DETNAS.WIDTH_MULT = 0.25
    cfg.MODEL.DETNAS.NORM = "BN"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 32
    return build_model(cfg)


@pytest.fixture(scope="module")
def classifier_checkpoint(tmp_path_factory):
    """A trained-looking SupernetClassifier checkpoint (random non-default values everywhere) and its weights."""
    model = build_model(_cfg())
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.uniform_(0.5, 1.5)
    folder = str(tmp_path_factory.mktemp("classifier"))
    DetectionCheckpointer(model, save_dir=folder).save("classifier")
    return os.path.join(folder, "classifier.pth"), model.state_dict()


@pytest.mark.parametrize("builder", sorted(DETECTORS))
def test_classifier_body_loads_into_supernet_detectors(classifier_checkpoint, builder):
    path, weights = classifier_checkpoint
    detector = _detector(builder)
    mapping = map_detnas_weights(torch.load(path)["model"], detector)
    assert (mapping.source_prefix, mapping.target_prefix) == ("backbone.body.", "backbone.bottom_up.body.")
    assert mapping.dropped_head_keys == [k for k in weights if k.startswith(CLASSIFIER_HEAD_PREFIX)]
    assert set(mapping.state_dict) <= set(detector.state_dict())  # nothing left over as unexpected
    DetNASCheckpointer(detector).load(path)
    loaded = detector.state_dict()
    body = {k: v for k, v in weights.items() if k.startswith("backbone.body.")}
    assert len(body) > 0
    for key, value in body.items():
        assert torch.equal(loaded["backbone.bottom_up." + key[len("backbone.") :]], value), key


def test_supernet_classifier_loads_into_a_fixed_architecture_detector(classifier_checkpoint):
    path, weights = classifier_checkpoint
    detector = _detector("build_detnas_fpn_backbone", arch="COCO-FPN-300M")
    mapping = map_detnas_weights(torch.load(path)["model"], detector)
    assert set(mapping.state_dict) <= set(detector.state_dict())
    assert len(mapping.dropped_candidate_keys) > 0
    DetNASCheckpointer(detector).load(path)
    loaded = detector.state_dict()
    encoding = get_architecture("COCO-FPN-300M").encoding
    for position, choice in enumerate(encoding):
        key = f"blocks.{position}.choices.{choice}.branch_main.0.weight"
        assert torch.equal(loaded["backbone.bottom_up.body." + key], weights["backbone.body." + key])


def test_detector_checkpoints_load_and_resume_unchanged(tmp_path):
    detector = _detector("build_detnas_fpn_backbone")
    with torch.no_grad():
        for value in detector.state_dict().values():
            if value.is_floating_point():
                value.add_(0.25)
    optimizer = torch.optim.SGD(detector.parameters(), lr=0.1, momentum=0.9)
    DetNASCheckpointer(detector, str(tmp_path), optimizer=optimizer).save("model_0000007", iteration=7)
    assert not map_detnas_weights(detector.state_dict(), detector).changed

    restored = _detector("build_detnas_fpn_backbone")
    new_optimizer = torch.optim.SGD(restored.parameters(), lr=0.1, momentum=0.9)
    extra = DetNASCheckpointer(restored, str(tmp_path), optimizer=new_optimizer).resume_or_load("", resume=True)
    assert extra["iteration"] == 7
    restored_state = restored.state_dict()
    for key, value in detector.state_dict().items():
        assert torch.equal(restored_state[key], value), key

    plain = torch.nn.Sequential(torch.nn.Linear(2, 2))  # no DetNAS body at all: untouched
    mapping = map_detnas_weights(plain.state_dict(), plain)
    assert not mapping.changed and list(mapping.state_dict) == ["0.weight", "0.bias"]


# ------------------------------------------------------------------------------------------- end to end
def test_shapes_supernet_classification_trains_and_reports_top1(tmp_path, monkeypatch):
    monkeypatch.setenv("DETNAS_DATA", str(tmp_path / "data"))
    cfg = _cfg()
    cfg.merge_from_list(
        [
            "SOLVER.MAX_ITER",
            "3",
            "SOLVER.IMS_PER_BATCH",
            "4",
            "DATALOADER.NUM_WORKERS",
            "0",
            "DATASETS.SHAPES.NUM_TRAIN",
            "4",
            "DATASETS.SHAPES.NUM_SEARCH",
            "1",
            "DATASETS.SHAPES.NUM_VAL",
            "4",
            "DATASETS.SHAPES.IMAGE_SIZE",
            "64",
            "SUPERNET.EVAL.BN_RECALIB.NUM_BATCHES",
            "1",
            "SUPERNET.EVAL.BN_RECALIB.BATCH_SIZE",
            "4",
            "SUPERNET.EVAL.NUM_PATHS",
            "2",
            "OUTPUT_DIR",
            str(tmp_path / "out"),
        ]
    )
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()  # evaluates SUPERNET.EVAL.NUM_PATHS paths after the last step
    results = {name: value for name, (value, _) in trainer.storage.latest().items() if name.startswith("classif")}
    assert set(results) == {f"classification/{path}top{k}" for path in ("", "path0/", "path1/") for k in (1, 5)}
    top1 = results["classification/top1"]
    assert 0.0 <= top1 <= 100.0
    assert top1 == pytest.approx((results["classification/path0/top1"] + results["classification/path1/top1"]) / 2)
    assert os.path.isfile(tmp_path / "out" / "model_final.pth")
