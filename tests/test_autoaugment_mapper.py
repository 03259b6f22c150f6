"""AutoAugment mapper, config keys, mapper registry, detectron2 train loader and the visualization tool."""

import importlib.util
import json
import os
import uuid

import cv2
import numpy as np
import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, DatasetMapper, build_detection_train_loader
from detectron2.data.datasets import register_coco_instances

from detnas_d2.data.config import add_autoaugment_config
from detnas_d2.data.mappers import (
    AutoAugmentDatasetMapper,
    build_test_mapper,
    build_train_mapper,
    registered_mapper_names,
)

HEIGHT, WIDTH = 96, 128
# per image: (x, y, w, h, category id); category 3 is only ever a crowd region
BOXES = [(8, 10, 30, 40, 1), (50, 20, 40, 30, 2), (100, 60, 20, 30, 4)]
CROWD_BOX = (60, 55, 30, 30, 3)
CATEGORIES = {1: "circle", 2: "square", 3: "crowd", 4: "triangle"}


@pytest.fixture(scope="module")
def tiny_coco(tmp_path_factory):
    """Register a 4-image COCO-format dataset (generated JPEGs + JSON) under a unique name."""
    root = tmp_path_factory.mktemp("tiny_coco")
    rng = np.random.RandomState(0)
    images, annotations = [], []
    for image_id in range(1, 5):
        image = rng.randint(60, 120, (HEIGHT, WIDTH, 3)).astype(np.uint8)
        for x, y, w, h, _category in BOXES:
            image[y : y + h, x : x + w] = rng.randint(130, 255, 3)
        file_name = f"{image_id}.jpg"
        cv2.imwrite(str(root / file_name), image)
        images.append({"id": image_id, "file_name": file_name, "height": HEIGHT, "width": WIDTH})
        for x, y, w, h, category in BOXES + [CROWD_BOX]:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": int(category == 3),
                }
            )
    categories = [{"id": i, "name": name} for i, name in CATEGORIES.items()]
    json_file = root / "instances.json"
    json_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    name = f"tiny_coco_{uuid.uuid4().hex[:8]}"
    register_coco_instances(name, {}, str(json_file), str(root))
    yield name
    DatasetCatalog.remove(name)


def make_cfg(dataset_name=None, **autoaugment):
    """A small-input training cfg (no resize, no flip unless set) with the AutoAugment keys declared."""
    cfg = get_cfg()
    add_autoaugment_config(cfg)
    cfg.INPUT.MIN_SIZE_TRAIN = (HEIGHT,)
    cfg.INPUT.MAX_SIZE_TRAIN = 1333
    cfg.INPUT.RANDOM_FLIP = "none"
    cfg.INPUT.AUTOAUGMENT.ENABLED = True
    for key, value in autoaugment.items():
        setattr(cfg.INPUT.AUTOAUGMENT, key, value)
    if dataset_name:
        cfg.DATASETS.TRAIN = (dataset_name,)
    return cfg


def contiguous_id(category):
    """Contiguous class index detectron2's COCO loader assigns to a category id."""
    return sorted(CATEGORIES).index(category)


# ------------------------------------------------------------------------------------------------ config
def test_add_autoaugment_config_is_idempotent_and_accepts_custom_lists():
    cfg = get_cfg()
    add_autoaugment_config(cfg)
    cfg.INPUT.AUTOAUGMENT.POLICY = "v2"
    add_autoaugment_config(cfg)  # second call keeps values
    assert cfg.INPUT.AUTOAUGMENT.POLICY == "v2"
    assert (cfg.INPUT.AUTOAUGMENT.ENABLED, cfg.INPUT.AUTOAUGMENT.BOX_MODE) == (False, "drop")
    assert (cfg.INPUT.AUTOAUGMENT.REFERENCE_CONTRAST, cfg.DATALOADER.MAPPER_NAME) == (False, "DatasetMapper")
    cfg.merge_from_list(["INPUT.AUTOAUGMENT.CUSTOM_POLICY", "[[['Equalize', 0.8, 10], ['Rotate_BBox', 1.0, 4]]]"])
    mapper = AutoAugmentDatasetMapper(cfg, is_train=True)
    assert mapper.autoaugment.policy == ((("Equalize", 0.8, 10), ("Rotate_BBox", 1.0, 4)),)
    assert mapper.autoaugment.image_format == "BGR"


def test_mapper_selection_from_config():
    cfg = get_cfg()
    add_autoaugment_config(cfg)
    assert type(build_train_mapper(cfg)) is DatasetMapper
    cfg.INPUT.AUTOAUGMENT.ENABLED = True
    train, test = build_train_mapper(cfg), build_test_mapper(cfg)
    assert isinstance(train, AutoAugmentDatasetMapper) and train.autoaugment is not None
    assert isinstance(test, AutoAugmentDatasetMapper) and test.autoaugment is None and not test.is_train
    cfg.INPUT.AUTOAUGMENT.ENABLED = False
    cfg.DATALOADER.MAPPER_NAME = "AutoAugmentDatasetMapper"
    assert isinstance(build_train_mapper(cfg), AutoAugmentDatasetMapper)
    cfg.DATALOADER.MAPPER_NAME = "MosaicMapper"
    with pytest.raises(ValueError) as error:
        build_train_mapper(cfg)
    assert "DATALOADER.MAPPER_NAME='MosaicMapper' is not registered" in str(error.value)
    assert "registered mappers: " + ", ".join(registered_mapper_names()) in str(error.value)
    assert {"AutoAugmentDatasetMapper", "DatasetMapper"} <= set(registered_mapper_names())
    cfg.DATALOADER.MAPPER_NAME = "DatasetMapper"
    cfg.INPUT.AUTOAUGMENT.ENABLED = True
    cfg.INPUT.AUTOAUGMENT.POLICY = "v7"
    with pytest.raises(ValueError, match="unknown AutoAugment policy 'v7'"):
        build_train_mapper(cfg)


# ------------------------------------------------------------------------------------------------ mapping
def test_v0_mapper_boxes_inside_image_and_classes_aligned(tiny_coco):
    np.random.seed(0)
    mapper = build_train_mapper(make_cfg(tiny_coco, POLICY="v0"))
    seen_changed = False
    for dataset_dict in DatasetCatalog.get(tiny_coco) * 10:
        out = mapper(dataset_dict)
        assert tuple(out["image"].shape) == (3, HEIGHT, WIDTH)
        instances = out["instances"]
        boxes = instances.gt_boxes.tensor.numpy()
        classes = instances.gt_classes.tolist()
        assert len(classes) == len(boxes) <= len(BOXES)
        assert contiguous_id(3) not in classes  # the crowd region is never an instance
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= WIDTH).all()
        assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= HEIGHT).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert len(set(classes)) == len(classes)  # each class once per image, as in the source
        seen_changed |= len(classes) < len(BOXES) or not np.allclose(
            sorted(map(tuple, boxes)), sorted((x, y, x + w, y + h) for x, y, w, h, _ in BOXES)
        )
    assert seen_changed  # v0 moved or dropped boxes in some of the 40 draws


def test_translate_policy_moves_boxes_with_their_classes(tiny_coco):
    np.random.seed(1)
    mapper = build_train_mapper(make_cfg(tiny_coco, CUSTOM_POLICY=[[["TranslateX_BBox", 1.0, 2]]]))  # +-50 px
    expected = {
        sign: {
            contiguous_id(c): (np.clip(x - sign * 50, 0, WIDTH), y, np.clip(x + w - sign * 50, 0, WIDTH), y + h)
            for x, y, w, h, c in BOXES
        }
        for sign in (1, -1)
    }
    signs = set()
    for dataset_dict in DatasetCatalog.get(tiny_coco) * 5:
        instances = mapper(dataset_dict)["instances"]
        got = {c: tuple(b) for c, b in zip(instances.gt_classes.tolist(), instances.gt_boxes.tensor.tolist())}
        matches = [sign for sign, boxes in expected.items() if got == {c: b for c, b in boxes.items() if b[2] > b[0]}]
        assert len(matches) == 1, got
        signs.add(matches[0])
    assert signs == {1, -1}  # boxes pushed out on either side vanished together with their classes


@pytest.mark.parametrize("box_mode", ["drop", "reference"])
def test_box_modes_drop_or_keep_pushed_out_boxes(tiny_coco, box_mode):
    np.random.seed(2)
    cfg = make_cfg(tiny_coco, CUSTOM_POLICY=[[["TranslateX_BBox", 1.0, 10]]], BOX_MODE=box_mode)  # +-250 px
    instances = build_train_mapper(cfg)(DatasetCatalog.get(tiny_coco)[0])["instances"]
    if box_mode == "drop":
        assert len(instances) == 0
    else:  # every box survives as a 5 % sliver at the left or right edge, with its class
        assert sorted(instances.gt_classes.tolist()) == sorted(contiguous_id(c) for *_, c in BOXES)
        boxes = instances.gt_boxes.tensor.numpy()
        assert np.allclose(boxes[:, 2] - boxes[:, 0], 0.05 * WIDTH)


def test_detectron2_train_loader_pulls_a_batch(tiny_coco):
    cfg = make_cfg(tiny_coco, POLICY="v1")
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = 2
    loader = build_detection_train_loader(cfg, mapper=build_train_mapper(cfg))
    batch = next(iter(loader))
    assert len(batch) == 2
    for item in batch:
        assert tuple(item["image"].shape) == (3, HEIGHT, WIDTH)
        assert len(item["instances"].gt_classes) == len(item["instances"].gt_boxes)


# ------------------------------------------------------------------------------------------------ tool
def test_visualize_tool_writes_grid(tiny_coco, tmp_path):
    config_file = tmp_path / "aa.yaml"
    config_file.write_text(
        f"DATASETS:\n  TRAIN: ('{tiny_coco}',)\nINPUT:\n  AUTOAUGMENT:\n    ENABLED: True\n    POLICY: v0\n"
    )
    spec = importlib.util.spec_from_file_location(
        "visualize_autoaugment", os.path.join(os.path.dirname(__file__), "..", "tools", "visualize_autoaugment.py")
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    output = str(tmp_path / "grid.png")
    tool.main(["--config-file", str(config_file), "--num", "6", "--output", output])
    grid = cv2.imread(output)
    assert grid is not None and grid.shape[0] > 200 and grid.shape[1] > 200
    panels = tool.augmented_panels(tool.setup_cfg(tool.parse_args(["--config-file", str(config_file)])), tiny_coco, 5)
    assert [title.split(":")[0] for *_, title in panels] == ["#0", "#1", "#2", "#3", "#4"]
    assert all(len(boxes) == len(classes) for _, boxes, classes, _ in panels)
