"""Your own data without Python: COCO / VOC registration from the command line and config, held-out search
splits, and the errors for the usual mistakes (missing files, class counts, empty splits, unreadable images)."""

import json
import logging
import os

import numpy as np
import pytest
import torch
import yaml
from detectron2.config import get_cfg
from detectron2.data import (
    DatasetCatalog,
    DatasetMapper,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.data.datasets.pascal_voc import CLASS_NAMES as VOC_CLASSES

import detnas_d2  # noqa: F401
import search_net
import train_net
from detnas_d2.cli.defaults import argument_parser
from detnas_d2.config import add_detnas_config
from detnas_d2.data import registration
from detnas_d2.data.config import add_registration_config
from detnas_d2.data.datasets import register_from_config
from detnas_d2.data.registration import (
    BadImageGuard,
    UnreadableImageError,
    held_out_split,
    register_coco,
    resolve_search_holdout,
)
from own_datasets import NUM_IMAGES, write_coco_dataset, write_voc_dataset
from presets import ANCHORS_64, SEARCH_CONFIG, STOCK_CONFIG, SUPERNET_CONFIG, TEST_AT_64, TINY_BN_RECALIB, TRAIN_AT_64

TINY = [
    "SOLVER.MAX_ITER",
    "3",
    "SOLVER.CHECKPOINT_PERIOD",
    "100",
    "SOLVER.WARMUP_ITERS",
    "1",
    "MODEL.FPN.OUT_CHANNELS",
    "16",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "32",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    "0.0",
    "DATALOADER.NUM_WORKERS",
    "0",
    "TEST.EVAL_PERIOD",
    "0",
    *TRAIN_AT_64,
    *TEST_AT_64,
]
#: the quarter-width FPN supernet on 'own_coco', 3 of its images held out for the search
OWN_COCO_SUPERNET = [
    "MODEL.DETNAS.WIDTH_MULT",
    "0.25",
    "MODEL.FPN.OUT_CHANNELS",
    "16",
    "MODEL.ROI_BOX_HEAD.CONV_DIM",
    "16",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "64",
    "MODEL.ROI_HEADS.NUM_CLASSES",
    "2",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    "0.0",
    *ANCHORS_64,
    "DATALOADER.NUM_WORKERS",
    "0",
    *TRAIN_AT_64,
    *TEST_AT_64,
    *TINY_BN_RECALIB,
    "DATASETS.TRAIN",
    "('own_coco',)",
    "DATASETS.TEST",
    "()",
    "DATASETS.SEARCH_HOLDOUT.SIZE",
    "3",
]


@pytest.fixture(scope="module")
def own_coco(tmp_path_factory):
    """(json file, image folder) of a 12-image, 2-class COCO dataset, registered as 'own_coco' by the tests."""
    return write_coco_dataset(str(tmp_path_factory.mktemp("own_coco")))


def _cfg(*opts):
    cfg = add_registration_config(add_detnas_config(get_cfg()))
    cfg.merge_from_file(STOCK_CONFIG)
    cfg.merge_from_list(list(opts))
    return cfg


def _ids(name):
    return {d["image_id"] for d in DatasetCatalog.get(name)}


def _iterations_logged(out):
    with open(os.path.join(out, "metrics.json")) as f:
        return [json.loads(line)["iteration"] for line in f if '"total_loss"' in line]


def _own_coco_held_out_cfg(json_file, image_dir, size, *extra):
    """A config training on the registered own_coco folder with ``size`` of its images held out for the search."""
    return _cfg(
        "DATASETS.REGISTER",
        f"[['coco', 'own_coco', '{json_file}', '{image_dir}']]",
        "MODEL.ROI_HEADS.NUM_CLASSES",
        "2",
        "DATASETS.TRAIN",
        "('own_coco',)",
        "DATASETS.TEST",
        "()",
        "DATASETS.SEARCH_HOLDOUT.SIZE",
        str(size),
        *extra,
    )


@pytest.mark.e2e
@pytest.mark.parametrize("num_procs", [1, 2])
def test_own_coco_dataset_trains_from_command_line_with_held_out_search_split(
    own_coco, tmp_path, monkeypatch, num_procs
):
    monkeypatch.setenv("DETNAS_DATA", str(tmp_path / "cache"))  # where the held-out split's json goes
    json_file, image_dir = own_coco
    out = str(tmp_path / "out")
    train_net.cli(
        [
            "--config-file",
            STOCK_CONFIG,
            "--num-gpus",
            str(num_procs),
            "--dist-url",
            "auto",
            "--register-coco",
            "own_coco",
            json_file,
            image_dir,
            *TINY,
            "SOLVER.IMS_PER_BATCH",
            str(2 * num_procs),
            "MODEL.ROI_HEADS.NUM_CLASSES",
            "2",
            "DATASETS.TRAIN",
            "('own_coco',)",
            "DATASETS.TEST",
            "('own_coco_search',)",
            "DATASETS.SEARCH_HOLDOUT.SIZE",
            "3",
            "OUTPUT_DIR",
            out,
        ]
    )
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    assert _iterations_logged(out)[-1] == 2

    with open(os.path.join(out, "config.yaml")) as f:  # what every process registered, saved for the next stage
        saved = yaml.safe_load(f)["DATASETS"]
    assert saved["REGISTER"] == [["coco", "own_coco", json_file, image_dir]]
    assert saved["TRAIN"] == ["own_coco_minus_search"]  # the search images never train the model
    assert saved["SEARCH_HOLDOUT"] == {
        "SIZE": 3,
        "SEED": 0,
        "SOURCE": "own_coco",
        "TRAIN_NAME": "own_coco_minus_search",
        "SEARCH_NAME": "own_coco_search",
    }

    register_from_config(_own_coco_held_out_cfg(json_file, image_dir, 3))
    search, rest = _ids("own_coco_search"), _ids("own_coco_minus_search")
    assert len(search) == 3 and not search & rest and search | rest == set(range(100, 100 + NUM_IMAGES))
    # the held-out split is scored against its own ground truth: exactly its images and their annotations
    with open(MetadataCatalog.get("own_coco_search").json_file) as f:
        ground_truth = json.load(f)
    with open(json_file) as f:
        source = json.load(f)
    assert {im["id"] for im in ground_truth["images"]} == search
    assert ground_truth["annotations"] == [a for a in source["annotations"] if a["image_id"] in search]
    with open(os.path.join(out, "metrics.json")) as f:
        final = [json.loads(line) for line in f][-1]
    assert np.isfinite(final["bbox/AP"])  # the final evaluation matched predictions against that ground truth


@pytest.mark.e2e
def test_voc_folder_registers_and_evaluates_on_a_held_out_split(tmp_path):
    voc, boxes = write_voc_dataset(str(tmp_path), num_images=5)
    out = str(tmp_path / "out")
    untrained = str(tmp_path / "untrained.pth")
    torch.save({"model": {}}, untrained)  # the model keeps its initialisation: this checks the data, not the AP
    results = train_net.cli(
        [
            "--config-file",
            STOCK_CONFIG,
            "--eval-only",
            "MODEL.WEIGHTS",
            untrained,
            "--register-voc",
            "own_voc",
            voc,
            "trainval",
            *TINY,
            "MODEL.ROI_HEADS.NUM_CLASSES",
            "20",
            "DATASETS.TRAIN",
            "('own_voc',)",
            "DATASETS.TEST",
            "('own_voc_search',)",
            "DATASETS.SEARCH_HOLDOUT.SIZE",
            "2",
            "OUTPUT_DIR",
            out,
        ]
    )
    meta = MetadataCatalog.get("own_voc")
    assert (meta.year, meta.split, meta.thing_classes) == (2007, "trainval", list(VOC_CLASSES))
    loaded = {d["file_name"]: d for d in DatasetCatalog.get("own_voc")}
    for file_id, objects in boxes.items():
        d = loaded[os.path.join(voc, "JPEGImages", f"{file_id}.jpg")]
        assert [(VOC_CLASSES[a["category_id"]], *a["bbox"]) for a in d["annotations"]] == [
            (n, x0 - 1, y0 - 1, x1, y1) for n, x0, y0, x1, y1 in objects
        ]
    # no json for a VOC source: COCOEvaluator converted the held-out split, and only it
    with open(os.path.join(out, "inference", "own_voc_search", "own_voc_search_coco_format.json")) as f:
        assert {im["id"] for im in json.load(f)["images"]} == _ids("own_voc_search")
    assert len(_ids("own_voc_search")) == 2 and "AP" in results["bbox"]
    assert registration.voc_year(str(tmp_path / "my_voc_export")) == 2012


def test_command_line_entries_are_repeatable_absolute_config_entries(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = argument_parser().parse_args(
        [
            "--config-file",
            STOCK_CONFIG,
            "--register-coco",
            "a",
            "a.json",
            "imgs",
            "--register-voc",
            "b",
            "VOC2007",
            "val",
            "--register-coco",
            "c",
            "c.json",
            "imgs",
            "SOLVER.MAX_ITER",
            "3",
        ]
    )
    cfg = _cfg("DATASETS.REGISTER", "[['coco', 'z', '/z.json', '/z']]")
    registration.add_command_line_datasets(cfg, args)
    registration.add_command_line_datasets(cfg, args)  # twice (e.g. a saved config.yaml + the same flags): no copies
    assert cfg.DATASETS.REGISTER == [
        ["coco", "z", "/z.json", "/z"],
        ["coco", "a", str(tmp_path / "a.json"), str(tmp_path / "imgs")],
        ["coco", "c", str(tmp_path / "c.json"), str(tmp_path / "imgs")],
        ["voc", "b", str(tmp_path / "VOC2007"), "val"],
    ]
    assert args.opts == ["SOLVER.MAX_ITER", "3"]


def test_held_out_split_is_deterministic_and_resolution_is_idempotent():
    dicts = [{"image_id": i} for i in range(50)]
    rest, held = held_out_split(dicts, 10, seed=3, source="x")
    assert held_out_split(dicts[::-1], 10, seed=3, source="x")[1] == held[::-1]  # order-independent draw
    assert {d["image_id"] for d in held} != {d["image_id"] for d in held_out_split(dicts, 10, 4, "x")[1]}
    assert len(held) == 10 and len(rest) == 40 and not {id(d) for d in held} & {id(d) for d in rest}

    cfg = _cfg("DATASETS.TRAIN", "('mine', 'other')", "DATASETS.SEARCH_HOLDOUT.SIZE", "4")
    resolve_search_holdout(cfg)
    resolved = cfg.clone()
    resolve_search_holdout(cfg)
    assert cfg == resolved
    assert cfg.DATASETS.TRAIN == ("mine_minus_search", "other") and cfg.SEARCH.DATASET == "mine_search"
    assert cfg.DATASETS.SEARCH_HOLDOUT.SOURCE == "mine"


def test_missing_files_are_named(tmp_path, own_coco):
    json_file, image_dir = own_coco
    missing = str(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match=f"dataset 'lost'.*annotation file {missing} does not exist"):
        train_net.cli(
            [
                "--config-file",
                STOCK_CONFIG,
                "--register-coco",
                "lost",
                missing,
                image_dir,
                "OUTPUT_DIR",
                str(tmp_path / "out"),
            ]
        )
    with pytest.raises(FileNotFoundError, match=f"image folder {tmp_path / 'imgs'} does not exist"):
        register_coco("lost", json_file, str(tmp_path / "imgs"))
    voc, _ = write_voc_dataset(str(tmp_path), num_images=1)
    split_file = os.path.join(voc, "ImageSets", "Main", "test.txt")
    with pytest.raises(FileNotFoundError, match=f"split file {split_file} does not exist"):
        registration.register_voc("lost_voc", voc, "test")


def test_class_count_mismatch_names_both_numbers_and_the_key(own_coco):
    json_file, image_dir = own_coco
    entry = (
        "DATASETS.REGISTER",
        f"[['coco', 'own_coco', '{json_file}', '{image_dir}']]",
        "DATASETS.TRAIN",
        "('own_coco',)",
        "DATASETS.TEST",
        "()",
    )
    with pytest.raises(
        ValueError,
        match=r"'own_coco' \(DATASETS.TRAIN\) has 2 categories \(category ids \[3, 7\]: "
        r"disc, bar\) but MODEL.ROI_HEADS.NUM_CLASSES is 5; "
        r"set MODEL.ROI_HEADS.NUM_CLASSES 2",
    ):
        register_from_config(_cfg(*entry))
    with pytest.raises(ValueError, match="has 2 categories .* but MODEL.RETINANET.NUM_CLASSES is 80"):
        register_from_config(_cfg(*entry, "MODEL.META_ARCHITECTURE", "RetinaNet", "MODEL.ROI_HEADS.NUM_CLASSES", "2"))
    register_from_config(_cfg(*entry, "MODEL.META_ARCHITECTURE", "RetinaNet", "MODEL.RETINANET.NUM_CLASSES", "2"))


def test_holding_out_every_image_names_both_numbers(own_coco):
    json_file, image_dir = own_coco
    register_from_config(
        _own_coco_held_out_cfg(
            json_file,
            image_dir,
            12,
            "DATASETS.SEARCH_HOLDOUT.TRAIN_NAME",
            "own_coco_all_but_12",
            "DATASETS.SEARCH_HOLDOUT.SEARCH_NAME",
            "own_coco_12",
        )
    )
    with pytest.raises(
        ValueError,
        match=r"DATASETS.SEARCH_HOLDOUT.SIZE = 12 holds out every image of 'own_coco', "
        r"which has 12 images",
    ):
        DatasetCatalog.get("own_coco_all_but_12")


def test_registration_is_idempotent_and_redefinition_names_the_dataset(own_coco, tmp_path):
    json_file, image_dir = own_coco
    register_coco("own_coco_twice", json_file, image_dir)
    register_coco("own_coco_twice", json_file, image_dir)
    other_json, other_dir = write_coco_dataset(str(tmp_path), num_images=2)
    with pytest.raises(
        ValueError,
        match=f"dataset 'own_coco_twice' is already registered as .*{json_file}.*cannot redefine it as .*{other_json}",
    ):
        register_coco("own_coco_twice", other_json, other_dir)
    with pytest.raises(ValueError, match="dataset 'shapes_train' is already registered"):
        register_coco("shapes_train", json_file, image_dir)


def test_malformed_entries_and_policies_are_rejected():
    with pytest.raises(
        ValueError,
        match=r"DATASETS.REGISTER\[0\] = \['coco', 'x', 'y.json'\]: expected "
        r"\[\"coco\", NAME, JSON_FILE, IMAGE_DIR\] or",
    ):
        register_from_config(_cfg("DATASETS.REGISTER", "[['coco', 'x', 'y.json']]"))
    with pytest.raises(ValueError, match="DATALOADER.ON_BAD_IMAGE = 'ignore'; allowed: fail, skip"):
        register_from_config(_cfg("DATALOADER.ON_BAD_IMAGE", "ignore"))


@pytest.fixture
def dicts_with_bad_images(own_coco, tmp_path):
    """'own_coco' dicts plus a corrupt JPEG and a missing file: (dicts, bad file names)."""
    json_file, image_dir = own_coco
    register_coco("own_coco", json_file, image_dir)
    dicts = DatasetCatalog.get("own_coco")
    corrupt, missing = str(tmp_path / "corrupt.jpg"), str(tmp_path / "missing.jpg")
    with open(corrupt, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not really a jpeg")
    dicts[0] = dict(dicts[0], file_name=corrupt)
    dicts[1] = dict(dicts[1], file_name=missing)
    return dicts, {corrupt, missing}


def test_unreadable_image_fails_naming_the_file(dicts_with_bad_images):
    dicts, _ = dicts_with_bad_images
    cfg = _cfg(*TINY)
    for is_train in (True, False):
        mapper = BadImageGuard(DatasetMapper(cfg, is_train=is_train), "fail", is_train)
        for d in dicts[:2]:
            with pytest.raises(
                UnreadableImageError, match=f"cannot read image {d['file_name']}: .*DATALOADER.ON_BAD_IMAGE 'skip'"
            ):
                mapper(d)
    # "skip" never hides images from evaluation: AP over fewer images would be wrong
    with pytest.raises(UnreadableImageError, match="corrupt.jpg"):
        next(iter(build_detection_test_loader(dicts, mapper=BadImageGuard(DatasetMapper(cfg, False), "skip", False))))


def test_unreadable_images_are_skipped_with_a_warning_when_asked(dicts_with_bad_images, caplog):
    dicts, bad = dicts_with_bad_images
    cfg = _cfg(*TINY, "DATALOADER.ON_BAD_IMAGE", "skip")
    loader = build_detection_train_loader(
        dicts,
        mapper=registration.guard_bad_images(cfg, DatasetMapper(cfg, is_train=True), is_train=True),
        total_batch_size=4,
        num_workers=0,
        aspect_ratio_grouping=False,
    )
    with caplog.at_level(logging.WARNING, logger=registration.logger.name):
        seen = [d["file_name"] for _, batch in zip(range(8), loader) for d in batch]  # 32 draws from 12 images
    assert len(seen) == 32 and not bad & set(seen)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "skipping" in r.getMessage()]
    assert sorted(m.split()[3].rstrip(":") for m in warned) == sorted(bad)  # one warning per file


@pytest.mark.e2e
def test_search_on_own_data_uses_the_held_out_split_in_one_and_two_processes(own_coco, tmp_path, monkeypatch):
    monkeypatch.setenv("DETNAS_DATA", str(tmp_path / "cache"))
    json_file, image_dir = own_coco
    register = ["--register-coco", "own_coco", json_file, image_dir]
    train_net.cli(
        [
            "--config-file",
            SUPERNET_CONFIG,
            *register,
            *OWN_COCO_SUPERNET,
            "SOLVER.MAX_ITER",
            "20",
            "SOLVER.IMS_PER_BATCH",
            "4",
            "SOLVER.WARMUP_ITERS",
            "5",
            "SOLVER.STEPS",
            "()",
            "OUTPUT_DIR",
            str(tmp_path / "supernet"),
        ]
    )
    logs = {}
    for n in (1, 2):
        out = str(tmp_path / f"search{n}")
        search_net.cli(
            [
                "--config-file",
                SEARCH_CONFIG,
                "--num-gpus",
                str(n),
                "--dist-url",
                "auto",
                *register,
                *OWN_COCO_SUPERNET,
                "SEARCH.DATASET",
                "",
                "SEARCH.GENERATIONS",
                "1",
                "SEARCH.POPULATION",
                "2",
                "SEARCH.TOPK",
                "1",
                "SEARCH.NUM_MUTATION",
                "0",
                "SEARCH.NUM_CROSSOVER",
                "0",
                "SEARCH.FLOPS_LIMIT",
                "30e6",
                "MODEL.WEIGHTS",
                str(tmp_path / "supernet" / "model_final.pth"),
                "OUTPUT_DIR",
                out,
            ]
        )
        with open(os.path.join(out, "search_log.jsonl")) as f:
            logs[n] = [{k: e[k] for k in ("arch", "metrics", "fitness")} for e in map(json.loads, f)]
        with open(os.path.join(out, "config.yaml")) as f:
            saved = yaml.safe_load(f)
        assert saved["SEARCH"]["DATASET"] == "own_coco_search"  # the held-out split, filled in
        assert saved["DATASETS"]["TRAIN"] == ["own_coco_minus_search"]
    assert len(logs[1]) == 2 and logs[1] == logs[2]
    assert all(np.isfinite(e["metrics"]["bbox/AP"]) for e in logs[1])


@pytest.mark.e2e
def test_training_fails_on_an_unreadable_image_or_skips_it_when_asked(tmp_path):
    json_file, image_dir = write_coco_dataset(str(tmp_path), num_images=6, seed=2)
    with open(os.path.join(image_dir, "img003.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not really a jpeg")
    argv = [
        "--config-file",
        STOCK_CONFIG,
        "--register-coco",
        "own_coco_broken",
        json_file,
        image_dir,
        *TINY,
        "SOLVER.IMS_PER_BATCH",
        "6",
        "MODEL.ROI_HEADS.NUM_CLASSES",
        "2",
        "DATASETS.TRAIN",
        "('own_coco_broken',)",
        "DATASETS.TEST",
        "()",
    ]
    bad = os.path.join(image_dir, "img003.jpg")
    with pytest.raises(UnreadableImageError, match=f"cannot read image {bad}"):
        train_net.cli([*argv, "OUTPUT_DIR", str(tmp_path / "fail")])
    train_net.cli([*argv, "DATALOADER.ON_BAD_IMAGE", "skip", "OUTPUT_DIR", str(tmp_path / "skip")])
    assert _iterations_logged(str(tmp_path / "skip"))[-1] == 2
