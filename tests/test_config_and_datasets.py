"""Config declaration and dataset registration (shapes splits, COCO search split, missing datasets)."""

import json
import os

import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog

import detnas_d2  # noqa: F401
from detnas_d2.config import add_detnas_config
from detnas_d2.data import datasets
from presets import shapes_images


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
