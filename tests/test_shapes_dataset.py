"""The embedded shapes dataset: determinism, disjoint splits, valid boxes, COCO loading, atomic generation."""

import hashlib
import json
import os

import pytest
from pycocotools.coco import COCO

from detnas_d2.data import shapes
from detnas_d2.data.datasets import load_image_folder
from detnas_d2.data.shapes import SHAPE_CLASSES, SPLITS, ShapesSpec, ensure_shapes

SMALL = ShapesSpec(num_train=12, num_search=5, num_val=5, image_size=64, min_size=6, max_size=40, crop_size=24)


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = ensure_shapes(SMALL, str(tmp_path / "a"))
    b = ensure_shapes(SMALL, str(tmp_path / "b"))
    for split in SPLITS:
        assert _sha(os.path.join(a, f"{split}.json")) == _sha(os.path.join(b, f"{split}.json"))
        for name in sorted(os.listdir(os.path.join(a, split))):
            assert _sha(os.path.join(a, split, name)) == _sha(os.path.join(b, split, name))


def test_other_seed_gives_other_data(tmp_path):
    a = ensure_shapes(SMALL, str(tmp_path))
    other = ShapesSpec(**{**SMALL.__dict__, "seed": 1})
    b = ensure_shapes(other, str(tmp_path))
    assert a != b
    assert _sha(os.path.join(a, "train.json")) != _sha(os.path.join(b, "train.json"))


def test_splits_are_disjoint_and_boxes_inside_images(tmp_path):
    root = ensure_shapes(SMALL, str(tmp_path))
    seen_ids, seen_ann_ids, seen_pixels = set(), set(), set()
    for split in SPLITS:
        coco = COCO(os.path.join(root, f"{split}.json"))
        img_ids = set(coco.getImgIds())
        assert len(img_ids) == getattr(SMALL, SPLITS[split][1])
        assert not img_ids & seen_ids
        seen_ids |= img_ids
        ann_ids = set(coco.getAnnIds())
        assert ann_ids and not ann_ids & seen_ann_ids
        seen_ann_ids |= ann_ids
        for img in coco.loadImgs(list(img_ids)):
            digest = _sha(os.path.join(root, split, img["file_name"]))
            assert digest not in seen_pixels
            seen_pixels.add(digest)
        assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == set(SHAPE_CLASSES)
        for ann in coco.loadAnns(list(ann_ids)):
            img = coco.imgs[ann["image_id"]]
            x, y, w, h = ann["bbox"]
            assert w > 0 and h > 0 and ann["area"] > 0
            assert x >= 0 and y >= 0 and x + w <= img["width"] and y + h <= img["height"]


def test_dataset_has_small_and_large_objects(tmp_path):
    root = ensure_shapes(SMALL, str(tmp_path))
    with open(os.path.join(root, "train.json")) as f:
        sides = [max(a["bbox"][2:]) for a in json.load(f)["annotations"]]
    assert min(sides) < 12 and max(sides) > 24


def test_classification_view_loads(tmp_path):
    root = ensure_shapes(SMALL, str(tmp_path))
    dicts = load_image_folder(os.path.join(root, "cls", "train"), SHAPE_CLASSES)
    assert dicts and {d["label"] for d in dicts} <= set(range(len(SHAPE_CLASSES)))
    assert all(os.path.isfile(d["file_name"]) for d in dicts)
    with pytest.raises(FileNotFoundError, match="missing_root"):
        load_image_folder(str(tmp_path / "missing_root"), SHAPE_CLASSES)


def test_interrupted_generation_is_never_trusted(tmp_path, monkeypatch):
    real = shapes._generate_split

    def dies_on_val(root, split, spec):
        if split == "val":
            raise KeyboardInterrupt("simulated kill")
        return real(root, split, spec)

    monkeypatch.setattr(shapes, "_generate_split", dies_on_val)
    with pytest.raises(KeyboardInterrupt):
        ensure_shapes(SMALL, str(tmp_path))
    final = shapes.dataset_dir(SMALL, str(tmp_path))
    assert not os.path.exists(final)
    monkeypatch.setattr(shapes, "_generate_split", real)
    root = ensure_shapes(SMALL, str(tmp_path))
    assert os.path.exists(os.path.join(root, "COMPLETE"))
    assert os.path.exists(os.path.join(root, "val.json"))


def test_bad_spec_values_are_rejected():
    with pytest.raises(ValueError, match="num_val"):
        ShapesSpec(num_val=0)
    with pytest.raises(ValueError, match="max_size"):
        ShapesSpec(image_size=64, max_size=80)
