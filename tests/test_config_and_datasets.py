"""Config declaration and dataset registration (shapes splits, COCO search split, missing datasets)."""

import json
import os

import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog

import detnas_d2  # noqa: F401
from detnas_d2.config import add_detnas_config, merge_from_list
from detnas_d2.data import datasets
from detnas_d2.engine import Trainer
from detnas_d2.search.config import validate_search_config
from presets import STOCK_CONFIG, STOCK_TINY, shapes_images


def test_add_detnas_config_twice_is_harmless():
    once = add_detnas_config(get_cfg())
    cfg = add_detnas_config(get_cfg())
    cfg.DATASETS.SHAPES.NUM_TRAIN = 7
    add_detnas_config(cfg)  # keeps what is set and declares nothing new
    assert cfg.DATASETS.SHAPES.NUM_TRAIN == 7
    cfg.DATASETS.SHAPES.NUM_TRAIN = once.DATASETS.SHAPES.NUM_TRAIN
    assert cfg.dump() == once.dump()


def test_shapes_splits_load_the_configured_sizes(tmp_path, monkeypatch):
    monkeypatch.setenv("DETNAS_DATA", str(tmp_path))
    cfg = add_detnas_config(get_cfg())
    cfg.merge_from_list(shapes_images(6, 3, 2, image_size=64))
    datasets.register_from_config(cfg)
    for name, count in (("shapes_train", 6), ("shapes_search", 3), ("shapes_val", 2)):
        records = DatasetCatalog.get(name)
        classes = MetadataCatalog.get(name).thing_classes
        assert len(records) == count and all(os.path.isfile(r["file_name"]) for r in records)
        assert all(0 <= a["category_id"] < len(classes) for r in records for a in r["annotations"])
    for name in ("shapes_cls_train", "shapes_cls_val"):
        records = DatasetCatalog.get(name)
        classes = MetadataCatalog.get(name).classes
        assert records and all(os.path.isfile(r["file_name"]) and 0 <= r["label"] < len(classes) for r in records)
        assert {r["label"] for r in records} == set(range(len(classes)))  # every class has crops


def test_missing_dataset_error_names_it():
    cfg = add_detnas_config(get_cfg())
    cfg.DATASETS.TRAIN = ("my_dataset_that_does_not_exist",)
    with pytest.raises(KeyError, match="my_dataset_that_does_not_exist.*not registered") as err:
        datasets.register_from_config(cfg)
    assert "DATASETS.TRAIN" in str(err.value)


def test_missing_coco_search_split_names_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    cfg = add_detnas_config(get_cfg())
    cfg.DATASETS.TEST = ("coco_2017_search5k",)
    if "coco_2017_search5k" in DatasetCatalog.list():
        DatasetCatalog.remove("coco_2017_search5k")
    with pytest.raises(FileNotFoundError, match="coco_2017_search5k.*instances_train2017.json"):
        datasets.register_from_config(cfg)


def test_coco_search_split_is_deterministic_and_disjoint(tmp_path, monkeypatch):
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "height": 10, "width": 10} for i in range(1, 5301)]
    coco = {"images": images, "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    os.makedirs(tmp_path / "coco" / "annotations")
    os.makedirs(tmp_path / "coco" / "train2017")
    with open(tmp_path / "coco" / "annotations" / "instances_train2017.json", "w") as f:
        json.dump(coco, f)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    monkeypatch.setenv("DETNAS_DATA", str(tmp_path / "cache"))  # the search part's ground-truth file goes here
    try:
        assert sorted(datasets.register_coco_search_splits()) == [
            "coco_2017_search5k",
            "coco_2017_train_minus_search5k",
        ]
        search = {d["image_id"] for d in DatasetCatalog.get("coco_2017_search5k")}
        rest = {d["image_id"] for d in DatasetCatalog.get("coco_2017_train_minus_search5k")}
        assert len(search) == 5000 and len(rest) == 300
        assert not search & rest and search | rest == set(range(1, 5301))
        assert search == {d["image_id"] for d in DatasetCatalog.get("coco_2017_search5k")}
    finally:
        for name in datasets.COCO_SEARCH_SPLITS:
            if name in DatasetCatalog.list():
                DatasetCatalog.remove(name)


def test_missing_imagenet_folder_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    cfg = add_detnas_config(get_cfg())
    cfg.DATASETS.TRAIN = ("imagenet_train",)
    with pytest.raises(FileNotFoundError, match=r"DATASETS.TRAIN names dataset 'imagenet_train'.*imagenet"):
        datasets.register_from_config(cfg)


def test_out_of_range_values_name_the_key_and_what_is_allowed(tmp_path, monkeypatch):
    """An integer for a float key reaches the key's own check; MAX_ITER 0 is named before fvcore's scheduler."""
    monkeypatch.setenv("DETNAS_DATA", str(tmp_path / "data"))
    cfg = add_detnas_config(get_cfg())
    merge_from_list(cfg, ["SEARCH.FLOPS_LIMIT", "-1"])
    with pytest.raises(ValueError, match=r"cfg.SEARCH.FLOPS_LIMIT = -1.0 is invalid: must be a number >= 0"):
        validate_search_config(cfg)
    cfg = add_detnas_config(get_cfg())
    cfg.merge_from_file(STOCK_CONFIG)
    merge_from_list(cfg, [*STOCK_TINY, "SOLVER.MAX_ITER", "0", "OUTPUT_DIR", str(tmp_path / "out")])
    with pytest.raises(ValueError, match="SOLVER.MAX_ITER = 0: a training runs that many iterations; .* >= 1"):
        Trainer(cfg)
