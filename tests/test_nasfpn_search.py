"""NAS-FPN neck search end to end on tiny shapes settings: the joint (DetNAS backbone + one-shot NAS-FPN) supernet
trains through train_net.py with identical dict-shaped paths on both ranks, search_net.py searches its neck under a
whole-detector FLOPs limit, the exported weights reproduce the best fitness, and the NAS-FPN configs load and build."""

import json
import os

import pytest
import torch
import yaml
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg

import detnas_d2  # noqa: F401
import search_net
import train_net
from detnas_d2.config import add_detnas_config
from detnas_d2.cost import detector_flops
from detnas_d2.engine import Trainer
from detnas_d2.modeling.neck import BottomUpNeckBackbone
from detnas_d2.parts.model import model_search_space, searchable_parts
from detnas_d2.space.backbone import BackboneSearchSpace
from detnas_d2.space.neck import NeckSearchSpace, register_neck_arch, resolve_neck_arch
from presets import REPO, SHAPES, TINY_BN_RECALIB, TINY_EVOLUTION, shapes_images

SUPERNET_CONFIG = os.path.join(SHAPES, "supernet_nasfpn_retinanet.yaml")
SEARCH_CONFIG = os.path.join(SHAPES, "search_nasfpn.yaml")
TINY = [
    "MODEL.NASFPN.CHANNELS",
    "16",
    "MODEL.RETINANET.NUM_CONVS",
    "1",
    "DATALOADER.NUM_WORKERS",
    "0",
    *shapes_images(48, 12, 4),
    *TINY_BN_RECALIB,
    "MODEL.RETINANET.SCORE_THRESH_TEST",  # 40 iterations leave scores near the prior: keep every detection, so
    "0.0",  # the fitness is finite on any CPU (at 0.05 some machines' float order gave no detection at all)
]
# At TINY sizes the detector costs 16.57M-17.17M multiply-adds at 128x128, set by the levels of the two
# intermediate cells; this limit rules out every neck with an intermediate P4 cell (e.g. the published block).
FLOPS_LIMIT = 16.8e6
SEARCH = [*TINY_EVOLUTION, "SEARCH.FLOPS_LIMIT", str(FLOPS_LIMIT)]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """DETNAS_DATA pointing at this module's generated shapes data, restored after the module."""
    root = str(tmp_path_factory.mktemp("nasfpn_data"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DETNAS_DATA", root)
        yield root


@pytest.fixture(scope="module")
def joint_supernet(data_root, tmp_path_factory):
    """The tiny joint supernet trained by ``train_net.py`` on 2 gloo processes: its output dir."""
    out = str(tmp_path_factory.mktemp("nasfpn_supernet") / "train")
    train_net.cli(
        [
            "--config-file",
            SUPERNET_CONFIG,
            "--num-gpus",
            "2",
            "--dist-url",
            "auto",
            *TINY,
            "SOLVER.MAX_ITER",
            "40",
            "SOLVER.IMS_PER_BATCH",
            "4",
            "SOLVER.WARMUP_ITERS",
            "5",
            "SOLVER.STEPS",
            "()",
            "DATASETS.TEST",
            "()",
            "SUPERNET.LOG_PATHS",
            "True",
            "OUTPUT_DIR",
            out,
        ]
    )
    return out


@pytest.fixture(scope="module")
def neck_search(joint_supernet, tmp_path_factory):
    """A tiny neck search (backbone fixed by search_nasfpn.yaml) over the joint supernet: its output dir."""
    out = str(tmp_path_factory.mktemp("nasfpn_search") / "search")
    search_net.cli(
        [
            "--config-file",
            SEARCH_CONFIG,
            *TINY,
            *SEARCH,
            "MODEL.WEIGHTS",
            os.path.join(joint_supernet, "model_final.pth"),
            "OUTPUT_DIR",
            out,
        ]
    )
    return out


def _cfg(config_file, *opts):
    cfg = add_detnas_config(get_cfg())
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    return cfg


def _read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_joint_supernet_trains_identical_dict_paths_on_both_ranks(joint_supernet):
    out = joint_supernet
    logs = [_read_jsonl(os.path.join(out, f"paths_rank{rank}.jsonl")) for rank in (0, 1)]
    assert logs[0] == logs[1]
    assert [entry["iter"] for entry in logs[0]] == list(range(40))
    space = {"backbone": BackboneSearchSpace("small"), "neck": NeckSearchSpace(7)}
    for entry in logs[0]:
        assert sorted(entry["arch"]) == ["backbone", "neck"]
        for part, arch in entry["arch"].items():
            assert space[part].validate(arch) == list(arch)
    necks = {json.dumps(entry["arch"]["neck"]) for entry in logs[0]}
    backbones = {tuple(entry["arch"]["backbone"]) for entry in logs[0]}
    assert len(necks) == 40 and len(backbones) == 40  # a fresh joint path every iteration
    assert os.path.isfile(os.path.join(out, "model_final.pth"))


def test_neck_search_writes_outputs_within_the_detector_flops_limit(neck_search):
    log = _read_jsonl(os.path.join(neck_search, "search_log.jsonl"))
    assert len(log) >= 6 and len({json.dumps(entry["arch"]) for entry in log}) == len(log)
    for entry in log:
        assert NeckSearchSpace(7).validate(entry["arch"]) == entry["arch"]
        assert entry["costs"]["flops"] <= FLOPS_LIMIT
        assert all(cell[2] != 4 for cell in entry["arch"][:2]), "an intermediate P4 cell exceeds this limit"
    assert any(entry["fitness"] > 0 for entry in log), "the tiny supernet should detect something"
    with open(os.path.join(neck_search, "best_arch.json")) as f:
        best = json.load(f)
    assert best["fitness"] == max(entry["fitness"] for entry in log)
    for name in ("search_state.json", "search_progress.png", "best_config.yaml", "best_weights.pth"):
        assert os.path.isfile(os.path.join(neck_search, name))
    with open(os.path.join(neck_search, "best_config.yaml")) as f:
        exported = yaml.safe_load(f)["MODEL"]
    assert exported["NASFPN"]["ONE_SHOT"] is False
    assert resolve_neck_arch(exported["NASFPN"]["ARCH"]) == best["arch"]
    assert exported["DETNAS"]["ARCH"] == "2120-2112-33130031-3132"  # the fixed backbone stays fixed


def test_exported_neck_weights_reproduce_best_fitness_and_flops(neck_search, tmp_path):
    with open(os.path.join(neck_search, "best_arch.json")) as f:
        best = json.load(f)
    weights = os.path.join(neck_search, "best_weights.pth")
    register_neck_arch("test-searched-neck", best["arch"])  # by name, as a user would
    fixed_opts = [*TINY, "MODEL.NASFPN.ONE_SHOT", "False", "MODEL.NASFPN.ARCH", "test-searched-neck"]
    # the standalone NASFPN has exactly the one-shot supernet's parameter and buffer names
    fixed = Trainer.build_model(_cfg(SEARCH_CONFIG, *fixed_opts))
    assert not searchable_parts(fixed)
    assert set(torch.load(weights)["model"]) == set(fixed.state_dict())
    DetectionCheckpointer(fixed).load(weights)
    assert detector_flops(fixed, 128, 128) == best["costs"]["flops"]

    results = train_net.cli(
        [
            "--config-file",
            SEARCH_CONFIG,
            "--eval-only",
            *fixed_opts,
            "MODEL.WEIGHTS",
            weights,
            "DATASETS.TEST",
            "('shapes_search',)",
            "OUTPUT_DIR",
            str(tmp_path / "eval"),
        ]
    )
    assert results["bbox"]["AP"] == pytest.approx(best["fitness"], abs=1e-9)


def test_exported_best_config_loads_and_reproduces_best_fitness(neck_search, tmp_path):
    with open(os.path.join(neck_search, "best_arch.json")) as f:
        best = json.load(f)
    results = train_net.cli(
        [
            "--config-file",
            os.path.join(neck_search, "best_config.yaml"),
            "--eval-only",
            "DATASETS.TEST",
            "('shapes_search',)",
            "OUTPUT_DIR",
            str(tmp_path / "eval_best"),
        ]
    )
    assert results["bbox"]["AP"] == pytest.approx(best["fitness"], abs=1e-9)


def test_backbone_flops_mode_on_a_neck_only_supernet_fails_clearly(joint_supernet, tmp_path):
    with pytest.raises(ValueError, match="FLOPS_MODE 'backbone' needs a one-shot DetNAS backbone.*'detector'"):
        search_net.cli(
            [
                "--config-file",
                SEARCH_CONFIG,
                *TINY,
                *SEARCH,
                "SEARCH.FLOPS_MODE",
                "backbone",
                "MODEL.WEIGHTS",
                os.path.join(joint_supernet, "model_final.pth"),
                "OUTPUT_DIR",
                str(tmp_path),
            ]
        )
    assert not os.path.exists(os.path.join(tmp_path, "search_log.jsonl"))


def test_neck_only_supernet_on_resnet18_trains_with_list_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("DETNAS_DATA", str(tmp_path / "data"))
    out = str(tmp_path / "train")
    train_net.cli(
        [
            "--config-file",
            os.path.join(SHAPES, "nasfpn_retinanet.yaml"),
            *TINY,
            "MODEL.NASFPN.ONE_SHOT",
            "True",
            "SOLVER.MAX_ITER",
            "3",
            "SOLVER.IMS_PER_BATCH",
            "2",
            "DATASETS.TEST",
            "()",
            "SUPERNET.LOG_PATHS",
            "True",
            "OUTPUT_DIR",
            out,
        ]
    )
    paths = [entry["arch"] for entry in _read_jsonl(os.path.join(out, "paths_rank0.jsonl"))]
    assert len(paths) == 3 and all(NeckSearchSpace(7).validate(path) == path for path in paths)


COCO_CONFIGS = ["nasfpn_retinanet.yaml", "supernet_nasfpn_retinanet.yaml"]
SHAPES_CONFIGS = {  # config -> one-shot parts of the model it builds
    "nasfpn_retinanet.yaml": [],
    "supernet_nasfpn_retinanet.yaml": ["backbone", "neck"],
    "search_nasfpn.yaml": ["neck"],
}


@pytest.mark.unit
@pytest.mark.parametrize("name", COCO_CONFIGS)
def test_coco_nasfpn_configs_merge_with_the_recipe(name):
    cfg = _cfg(os.path.join(REPO, "configs", name))
    assert (cfg.MODEL.META_ARCHITECTURE, cfg.MODEL.BACKBONE.NAME) == ("RetinaNet", "build_nasfpn_backbone")
    assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS) == (
        64,
        0.08,
        90000,
        (60000, 80000),
    )
    assert (cfg.MODEL.RETINANET.FOCAL_LOSS_ALPHA, cfg.MODEL.RETINANET.FOCAL_LOSS_GAMMA) == (0.25, 1.5)
    assert cfg.MODEL.RETINANET.IOU_THRESHOLDS == [0.5, 0.5] and cfg.MODEL.NASFPN.CHANNELS == 256
    assert cfg.MODEL.ANCHOR_GENERATOR.SIZES[0] == [32, 40.32, 50.80]  # 4 x stride 8, 3 scales
    one_shot = name.startswith("supernet")
    bottom_up = "build_detnas_backbone" if one_shot else "build_resnet_backbone"
    assert (cfg.MODEL.NASFPN.ONE_SHOT, cfg.MODEL.NECK.BOTTOM_UP) == (one_shot, bottom_up)


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(SHAPES_CONFIGS))
def test_shapes_nasfpn_configs_build(name):
    cfg = _cfg(os.path.join(SHAPES, name))
    model = Trainer.build_model(cfg)
    assert isinstance(model.backbone, BottomUpNeckBackbone) and model.backbone.size_divisibility == 128
    assert sorted(searchable_parts(model)) == SHAPES_CONFIGS[name]
    if SHAPES_CONFIGS[name]:
        model_search_space(model)  # a search space exists for every one-shot model
