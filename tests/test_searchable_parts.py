"""The searchable-part protocol: the registry behind SEARCH.SPACE, and what each part writes into a config."""

import random

import pytest
from detectron2.config import get_cfg

from detnas_d2.config import add_detnas_config
from detnas_d2.data.autoaugment import AutoAugmentPolicySpace
from detnas_d2.parts import get_part, parse_space, part_archs, part_names
from detnas_d2.search.config import validate_search_config
from detnas_d2.space.backbone import parse_architecture
from detnas_d2.space.neck import NASFPN_ARCH, resolve_neck_arch


def _cfg(*opts):
    cfg = add_detnas_config(get_cfg())
    cfg.merge_from_list(list(opts))
    return cfg


def test_space_lists_registered_parts():
    assert part_names() == ["autoaug", "backbone", "neck"]
    assert parse_space("") == [] and parse_space(" backbone, neck ,autoaug") == ["backbone", "neck", "autoaug"]
    for bad in ("head", "neck,neck", "backbone;neck"):
        with pytest.raises(
            ValueError,
            match=rf"cfg.SEARCH.SPACE = '{bad}' is invalid: must be comma-separated part "
            r"names from \['autoaug', 'backbone', 'neck'\]",
        ):
            parse_space(bad)
    assert part_archs(["neck"], [1]) == {"neck": [1]}
    assert part_archs(["backbone", "neck"], {"backbone": [0], "neck": [1]}) == {"backbone": [0], "neck": [1]}


def test_each_part_writes_its_fixed_architecture_into_a_config():
    cfg = _cfg()
    backbone = [0, 1, 2, 3] * 5
    get_part("backbone").write_config(cfg, backbone)
    assert list(parse_architecture(cfg.MODEL.DETNAS.ARCH).encoding) == backbone
    get_part("neck").write_config(cfg, NASFPN_ARCH)
    assert resolve_neck_arch(cfg.MODEL.NASFPN.ARCH) == NASFPN_ARCH and cfg.MODEL.NASFPN.ONE_SHOT is False
    policy = AutoAugmentPolicySpace(2, 2).sample(random.Random(0))
    get_part("autoaug").write_config(cfg, policy)
    assert cfg.INPUT.AUTOAUGMENT.ENABLED is True and cfg.INPUT.AUTOAUGMENT.CUSTOM_POLICY == policy
    cfg.DATALOADER.MAPPER_NAME = "ClassificationMapper"
    with pytest.raises(ValueError, match="MAPPER_NAME = 'ClassificationMapper' would ignore the searched policy"):
        get_part("autoaug").write_config(cfg, policy)


def test_search_space_validation_names_the_key():
    validate_search_config(_cfg("SEARCH.SPACE", "backbone,neck,autoaug"))  # a joint search: one-shot, then proxy
    validate_search_config(_cfg("SEARCH.SPACE", ""))
    with pytest.raises(ValueError, match="cfg.SEARCH.SPACE = 'nas' is invalid"):
        validate_search_config(_cfg("SEARCH.SPACE", "nas"))
    with pytest.raises(
        ValueError, match="cfg.SEARCH.EVALUATOR = 'one_shot' is invalid: SEARCH.SPACE 'autoaug' needs 'proxy'"
    ):
        validate_search_config(_cfg("SEARCH.SPACE", "autoaug"))
