"""Config declaration and dataset registration (shapes splits, COCO search split, missing datasets)."""
import json
import os

import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog

import detnas_d2  # noqa: F401
from detnas_d2.config import add_detnas_config
from detnas_d2.data import datasets


def test_add_detnas_config_twice_is_harmless():
    cfg = get_cfg()
    add_detnas_config(cfg)
    add_detnas_config(cfg)
    assert cfg.DATASETS.SHAPES.NUM_TRAIN > 0


def test_shapes_splits_are_registered():
    datasets.register_builtin_datasets()
    names = set(DatasetCatalog.list())
    for name in ("shapes_train", "shapes_search", "shapes_val", "shapes_cls_train", "shapes_cls_val"):
        assert name in names


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
            "coco_2017_search5k", "coco_2017_train_minus_search5k"]
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
