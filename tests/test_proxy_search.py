"""Proxy-task search: candidate appliers, the proxy schedule, TRAIN_SUBSET, config validation, and a tiny
AutoAugment policy search through search_net.py whose exported config builds the best policy's mapper."""

import json
import os
import random

import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog

import detnas_d2  # noqa: F401
import search_net
from detnas_d2.config import add_detnas_config
from detnas_d2.data.autoaugment import AutoAugmentPolicySpace
from detnas_d2.data.datasets import register_from_config
from detnas_d2.data.mappers import AutoAugmentDatasetMapper, build_train_mapper
from detnas_d2.search.config import validate_search_config
from detnas_d2.search.proxy import (
    ProxyFitness,
    build_proxy_cost_fns,
    build_proxy_space,
    candidate_config,
    candidate_detector_flops,
    proxy_training_config,
    register_train_subset,
    train_subset_indices,
)
from detnas_d2.space.neck import NASFPN_ARCH, NeckSearchSpace, resolve_neck_arch
from presets import ANCHORS_64, SHAPES, TEST_AT_64, TRAIN_AT_64, shapes_images

SEARCH_CONFIG = os.path.join(SHAPES, "search_autoaug.yaml")
NASFPN_CONFIG = os.path.join(SHAPES, "nasfpn_retinanet.yaml")
TINY = [
    "MODEL.FPN.OUT_CHANNELS",
    "16",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "32",
    "DATALOADER.NUM_WORKERS",
    "0",
    *shapes_images(16, 6, 4, image_size=64),
    *TRAIN_AT_64,
    *TEST_AT_64,
    *ANCHORS_64,
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.WARMUP_ITERS",
    "1",
]
SEARCH = [
    "SEARCH.POPULATION",
    "3",
    "SEARCH.GENERATIONS",
    "2",
    "SEARCH.TOPK",
    "2",
    "SEARCH.NUM_MUTATION",
    "1",
    "SEARCH.NUM_CROSSOVER",
    "1",
    "SEARCH.MUTATION_PROB",
    "0.5",
    "SEARCH.PROXY.MAX_ITER",
    "3",
    "SEARCH.PROXY.STEPS",
    "(2,)",
    "SEARCH.PROXY.TRAIN_SUBSET",
    "10",
]


def _cfg(config=SEARCH_CONFIG, overrides=()):
    """A config with every key search_net.py declares, merged from ``config`` and ``overrides``."""
    cfg = add_detnas_config(get_cfg())
    cfg.merge_from_file(config)
    cfg.merge_from_list(list(overrides))
    return cfg


def _log(out):
    with open(os.path.join(out, "search_log.jsonl")) as f:
        return [json.loads(line) for line in f]


def _losses(folder):
    """(iteration, smoothed total loss) of every write to a training folder's metrics.json."""
    with open(os.path.join(folder, "metrics.json")) as f:
        return [(e["iteration"], e["total_loss"]) for e in map(json.loads, f) if "total_loss" in e]


def _as_policy(arch):
    """An architecture of the policy space in the nested-tuple form ``AutoAugment.policy`` holds."""
    return tuple(tuple(tuple(op) for op in sub) for sub in arch)


def test_autoaug_applier_and_proxy_schedule(tmp_path):
    cfg = _cfg(overrides=["SOLVER.BASE_LR", "0.03", "SOLVER.MAX_ITER", "777", "SOLVER.STEPS", "(500,)"])
    space = build_proxy_space(cfg)
    assert (space.num_sub_policies, space.ops_per_sub_policy) == (2, 2)
    arch = space.sample(random.Random(3))
    applied = candidate_config(cfg, space, arch)
    assert cfg.INPUT.AUTOAUGMENT.ENABLED is False and cfg.INPUT.AUTOAUGMENT.CUSTOM_POLICY == []  # input untouched
    assert applied.INPUT.AUTOAUGMENT.ENABLED is True
    assert applied.INPUT.AUTOAUGMENT.CUSTOM_POLICY == [[list(op) for op in sub] for sub in space.to_policy(arch)]
    assert (applied.SOLVER.MAX_ITER, applied.SOLVER.STEPS, applied.SOLVER.BASE_LR) == (777, (500,), 0.03)

    # the dumped config reads back into a fresh config and builds the policy's mapper
    path = tmp_path / "applied.yaml"
    path.write_text(applied.dump())
    mapper = build_train_mapper(_cfg(str(path)))
    assert isinstance(mapper, AutoAugmentDatasetMapper) and mapper.autoaugment.policy == _as_policy(arch)

    out = str(tmp_path / "cand")
    proxy = proxy_training_config(cfg, space, arch, out, train_datasets=["subset"])
    assert (proxy.SOLVER.MAX_ITER, proxy.SOLVER.STEPS, proxy.SOLVER.BASE_LR) == (100, (80,), 0.03)  # LR 0 = keep
    assert (proxy.SEED, proxy.OUTPUT_DIR, proxy.DATASETS.TRAIN, proxy.DATASETS.TEST) == (
        0,
        out,
        ("subset",),
        ("shapes_search",),
    )
    assert proxy.INPUT.AUTOAUGMENT.CUSTOM_POLICY == applied.INPUT.AUTOAUGMENT.CUSTOM_POLICY
    cfg.merge_from_list(["SEARCH.PROXY.BASE_LR", "0.005", "SEARCH.PROXY.SEED", "7"])
    proxy = proxy_training_config(cfg, space, arch, out)
    assert (proxy.SOLVER.BASE_LR, proxy.SEED, proxy.DATASETS.TRAIN) == (0.005, 7, ("shapes_train",))

    cfg.merge_from_list(["DATALOADER.MAPPER_NAME", "ClassificationMapper"])
    with pytest.raises(ValueError, match="MAPPER_NAME = 'ClassificationMapper' would ignore the searched policy"):
        candidate_config(cfg, space, arch)


def test_neck_applier_and_detector_flops():
    cfg = _cfg(
        NASFPN_CONFIG,
        [
            "SEARCH.EVALUATOR",
            "proxy",
            "SEARCH.SPACE",
            "neck",
            "SEARCH.NECK.NUM_CELLS",
            "7",
            "SEARCH.FLOPS_MODE",
            "detector",
            "SEARCH.DETECTOR_INPUT_SIZE",
            "(64, 64)",
            "SEARCH.FLOPS_LIMIT",
            "1e12",
            "MODEL.NASFPN.ONE_SHOT",
            "True",
            "MODEL.NASFPN.NUM_REPEATS",
            "1",
            "MODEL.NASFPN.CHANNELS",
            "8",
            "MODEL.RESNETS.RES2_OUT_CHANNELS",
            "64",
            "MODEL.RESNETS.DEPTH",
            "18",
        ],
    )
    space = build_proxy_space(cfg)
    assert isinstance(space, NeckSearchSpace) and space.num_cells == 7
    arch = space.sample(random.Random(0))
    applied = candidate_config(cfg, space, arch)
    assert resolve_neck_arch(applied.MODEL.NASFPN.ARCH) == space.validate(arch)
    assert applied.MODEL.NASFPN.ONE_SHOT is False
    assert resolve_neck_arch(applied.MODEL.NASFPN.ARCH) == space.validate(arch)
    assert cfg.MODEL.NASFPN.ONE_SHOT is True  # input untouched

    flops = build_proxy_cost_fns(cfg, space)["flops"]
    published = flops(NASFPN_ARCH)
    # the same bottom-up network and heads: only the neck's cells change the count
    assert published > 0 and flops(NASFPN_ARCH) == published and flops(arch) != published

    cfg.merge_from_list(["SEARCH.FLOPS_MODE", "backbone"])
    with pytest.raises(ValueError, match="SEARCH.FLOPS_MODE = 'backbone' is invalid for a proxy neck search"):
        build_proxy_cost_fns(cfg, space)
    cfg.merge_from_list(
        [
            "MODEL.BACKBONE.NAME",
            "build_retinanet_resnet_fpn_backbone",
            "MODEL.RESNETS.OUT_FEATURES",
            "['res3', 'res4', 'res5']",
            "MODEL.FPN.IN_FEATURES",
            "['res3', 'res4', 'res5']",
        ]
    )
    with pytest.raises(ValueError, match="SEARCH.SPACE 'neck' needs a detector with a NAS-FPN neck"):
        candidate_detector_flops(cfg, space)(arch)


def test_search_config_validation_and_cost_limits():
    cfg = _cfg(overrides=["SEARCH.EVALUATOR", "supernet"])
    with pytest.raises(
        ValueError,
        match=r"cfg.SEARCH.EVALUATOR = 'supernet' is invalid: "
        r"must be one of \('one_shot', 'proxy'\)",
    ):
        validate_search_config(cfg)
    bad = [
        (
            ["SEARCH.EVALUATOR", "one_shot"],
            "cfg.SEARCH.EVALUATOR = 'one_shot' is invalid: SEARCH.SPACE 'autoaug' needs 'proxy'",
        ),
        (["SEARCH.PROXY.MAX_ITER", "0"], "cfg.SEARCH.PROXY.MAX_ITER = 0 is invalid: must be an integer >= 1"),
        (
            ["SEARCH.PROXY.STEPS", "(80, 120)"],
            r"cfg.SEARCH.PROXY.STEPS = \(80, 120\) is invalid: must be strictly "
            r"increasing integers in \(0, SEARCH.PROXY.MAX_ITER = 100\)",
        ),
        (["SEARCH.PROXY.BASE_LR", "-0.1"], "cfg.SEARCH.PROXY.BASE_LR = -0.1 is invalid"),
        (["SEARCH.PROXY.TRAIN_SUBSET", "-1"], "cfg.SEARCH.PROXY.TRAIN_SUBSET = -1 is invalid"),
        (["SEARCH.AUTOAUG.NUM_SUB_POLICIES", "0"], "cfg.SEARCH.AUTOAUG.NUM_SUB_POLICIES = 0 is invalid"),
        (["SEARCH.NECK.NUM_CELLS", "4"], r"cfg.SEARCH.NECK.NUM_CELLS = 4 is invalid: must be an integer >= 5"),
    ]
    for overrides, message in bad:
        with pytest.raises(ValueError, match=message):
            validate_search_config(_cfg(overrides=overrides))
    validate_search_config(_cfg())  # the shipped search config is valid

    cfg = _cfg(overrides=["SEARCH.FLOPS_LIMIT", "3e8"])
    with pytest.raises(
        ValueError,
        match="cfg.SEARCH.FLOPS_LIMIT = 3e\\+08 is set, but SEARCH.SPACE 'autoaug' with "
        "SEARCH.EVALUATOR 'proxy' has no flops cost",
    ):
        build_proxy_cost_fns(cfg, build_proxy_space(cfg))
    assert build_proxy_cost_fns(_cfg(), build_proxy_space(_cfg())) == {}
    cfg = _cfg(overrides=["SEARCH.SPACE", "backbone"])
    with pytest.raises(
        ValueError, match="cfg.SEARCH.SPACE = 'backbone' cannot be searched with SEARCH.EVALUATOR 'proxy'"
    ):
        build_proxy_space(cfg)


def test_train_subset_is_deterministic(tmp_path, monkeypatch):
    first = train_subset_indices(50, 10, seed=0)
    assert first == train_subset_indices(50, 10, seed=0) == sorted(set(first)) and len(first) == 10
    assert first != train_subset_indices(50, 10, seed=1)
    assert train_subset_indices(7, 0, seed=0) == list(range(7))
    with pytest.raises(ValueError, match="cfg.SEARCH.PROXY.TRAIN_SUBSET = 8 is invalid: DATASETS.TRAIN holds only 7"):
        train_subset_indices(7, 8, seed=0)

    monkeypatch.setenv("DETNAS_DATA", str(tmp_path / "data"))
    cfg = _cfg(overrides=[*TINY, "SEARCH.PROXY.TRAIN_SUBSET", "5", "SEARCH.SEED", "4"])
    register_from_config(cfg)
    full = [d["file_name"] for d in DatasetCatalog.get("shapes_train")]
    name = register_train_subset(cfg)
    subset = [d["file_name"] for d in DatasetCatalog.get(name)]
    assert subset == [full[i] for i in train_subset_indices(len(full), 5, seed=4)]
    assert [d["file_name"] for d in DatasetCatalog.get(register_train_subset(cfg))] == subset  # re-registration


@pytest.mark.e2e
def test_tiny_policy_search_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("DETNAS_DATA", str(tmp_path / "data"))
    out = str(tmp_path / "search")
    result = search_net.cli(["--config-file", SEARCH_CONFIG, *TINY, *SEARCH, "OUTPUT_DIR", out])

    log = _log(out)
    keys = [entry["key"] for entry in log]
    assert len(log) >= 4 and len(set(keys)) == len(keys)  # 2 generations, nothing trained twice
    assert all("bbox/AP" in entry["metrics"] and entry["costs"] == {} for entry in log)
    with open(os.path.join(out, "best_arch.json")) as f:
        best = json.load(f)
    assert best["arch"] == result.best.arch and best["search"]["SEARCH.PROXY.MAX_ITER"] == 3
    # one folder per candidate: its config and training metrics, no checkpoint
    proxy_dirs = sorted(os.listdir(os.path.join(out, "proxy")))
    assert len(proxy_dirs) == len(log)
    for name in proxy_dirs:
        files = os.listdir(os.path.join(out, "proxy", name))
        assert "config.yaml" in files and "metrics.json" in files and not [f for f in files if f.endswith(".pth")]
    losses = [_losses(os.path.join(out, "proxy", name)) for name in proxy_dirs]
    assert all([it for it, _ in loss] == [2] for loss in losses)  # the 3 proxy iterations ran
    assert len({loss[0][1] for loss in losses}) > 1  # same seed everywhere: the policies made the difference

    # the exported config: the best policy with the full schedule and data, and it builds that policy's mapper
    cfg = _cfg(os.path.join(out, "best_config.yaml"))
    assert (cfg.SOLVER.MAX_ITER, cfg.DATASETS.TRAIN) == (800, ("shapes_train",))
    mapper = build_train_mapper(cfg)
    assert isinstance(mapper, AutoAugmentDatasetMapper) and mapper.autoaugment.policy == _as_policy(best["arch"])

    # same seed for every candidate: retraining a logged candidate after the others repeats its training exactly
    cfg = _cfg(overrides=[*TINY, *SEARCH, "OUTPUT_DIR", str(tmp_path / "again")])
    register_from_config(cfg)
    evaluator = ProxyFitness(cfg, AutoAugmentPolicySpace(num_sub_policies=2, ops_per_sub_policy=2))
    (results,) = evaluator([log[0]["arch"]])
    assert results["bbox"]["AP"] == pytest.approx(log[0]["metrics"]["bbox/AP"], abs=1e-12, nan_ok=True)
    first_dir = os.path.join(out, "proxy", os.path.basename(evaluator.candidate_dir(log[0]["arch"])))
    assert _losses(evaluator.candidate_dir(log[0]["arch"])) == _losses(first_dir)
