"""detectron2 integration of the necks: config keys, NECK registry, the composed backbone, RetinaNet + NAS-FPN training
on CPU with sizes not divisible by 128, FPN parity with detectron2's RetinaNet backbone, one-shot arch selection."""

import json
import os
import random

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone, build_model
from detectron2.modeling.backbone.fpn import build_retinanet_resnet_fpn_backbone
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from detnas_d2.modeling.config import add_nasfpn_config
from detnas_d2.modeling.neck import BottomUpNeckBackbone
from detnas_d2.space.neck import NeckSearchSpace

LEVEL_NAMES = ["p3", "p4", "p5", "p6", "p7"]


def _cfg(neck=(), **nasfpn):
    """Tiny R-18 + NAS-FPN RetinaNet config on CPU; ``neck`` pairs set ``MODEL.NECK``, ``nasfpn`` ``MODEL.NASFPN``."""
    cfg = get_cfg()
    add_nasfpn_config(cfg)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = "RetinaNet"
    cfg.MODEL.BACKBONE.NAME = "build_nasfpn_backbone"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.NASFPN.NUM_REPEATS = 2
    cfg.MODEL.NASFPN.CHANNELS = 32
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.RETINANET.IN_FEATURES = list(LEVEL_NAMES)
    cfg.MODEL.RETINANET.NUM_CLASSES = 3
    cfg.MODEL.RETINANET.NUM_CONVS = 1
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16], [32], [64], [128], [256]]
    cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [[0.5, 1.0, 2.0]]
    for key, value in dict(neck).items():
        setattr(cfg.MODEL.NECK, key, value)
    for key, value in nasfpn.items():
        setattr(cfg.MODEL.NASFPN, key, value)
    return cfg


def test_add_nasfpn_config_declares_keys_and_is_idempotent():
    cfg = get_cfg()
    add_nasfpn_config(cfg)
    neck, nasfpn = cfg.MODEL.NECK, cfg.MODEL.NASFPN
    assert (neck.NAME, neck.BOTTOM_UP, neck.IN_FEATURES) == (
        "NASFPN",
        "build_resnet_backbone",
        ["res3", "res4", "res5"],
    )
    assert (nasfpn.NUM_REPEATS, nasfpn.CHANNELS, nasfpn.ARCH) == (7, 256, "NAS-FPN")
    assert (nasfpn.NORM, nasfpn.ATTENTION.POOL, nasfpn.ATTENTION.SOURCE, nasfpn.ONE_SHOT) == (
        "BN",
        "max",
        "coarser",
        False,
    )
    assert (nasfpn.DROPBLOCK.DROP_PROB, nasfpn.DROPBLOCK.BLOCK_SIZE) == (0.0, 3)
    cfg.MODEL.NASFPN.NUM_REPEATS = 3
    cfg.MODEL.NECK.NAME = "FPN"
    add_nasfpn_config(cfg)
    assert cfg.MODEL.NASFPN.NUM_REPEATS == 3 and cfg.MODEL.NECK.NAME == "FPN"
    compact = "3,1,1,3 | 3,0,1,5 | 4,0,0,6 | 3,0,6,7 | 2,1,7,8 | 0,1,6,9 | 1,1,9,10"
    cfg.merge_from_list(["MODEL.NASFPN.ATTENTION.POOL", "avg", "MODEL.NASFPN.ARCH", compact])
    assert (cfg.MODEL.NASFPN.ATTENTION.POOL, cfg.MODEL.NASFPN.ARCH) == ("avg", compact)


def _training_inputs():
    """Two images whose sizes are not multiples of 128, with a few boxes each."""
    inputs = []
    for height, width, boxes in ((100, 150, [[10, 10, 60, 50], [70, 20, 140, 90]]), (90, 130, [[5, 30, 80, 85]])):
        instances = Instances((height, width))
        instances.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        instances.gt_classes = torch.arange(len(boxes)) % 3
        image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
        inputs.append({"image": image, "instances": instances, "height": height, "width": width})
    return inputs


def test_retinanet_with_resnet_and_nasfpn_trains_on_unpadded_sizes():
    torch.manual_seed(0)
    model = build_model(_cfg())
    backbone = model.backbone
    assert isinstance(backbone, BottomUpNeckBackbone)
    assert type(backbone.bottom_up).__name__ == "ResNet" and type(backbone.neck).__name__ == "NASFPN"
    assert backbone.size_divisibility == 128
    assert backbone.output_shape() == {
        name: ShapeSpec(channels=32, stride=2 ** (3 + i)) for i, name in enumerate(LEVEL_NAMES)
    }
    assert len(backbone.neck.nasfpn.blocks) == 2 and backbone.neck.nasfpn.blocks[0].output_nodes == [7, 8, 9, 11, 10]

    inputs = _training_inputs()
    assert tuple(model.preprocess_image(inputs).tensor.shape) == (2, 3, 128, 256)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    with EventStorage():
        losses = model(inputs)
    assert set(losses) == {"loss_cls", "loss_box_reg"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    optimizer.zero_grad()
    total.backward()
    neck_conv = backbone.neck.nasfpn.blocks[-1].cells[0].conv_norm[0]
    assert neck_conv.weight.grad is not None and neck_conv.weight.grad.abs().sum() > 0
    before = neck_conv.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, neck_conv.weight)

    model.eval()
    with torch.no_grad():
        detections = model(inputs)
    assert [d["instances"].image_size for d in detections] == [(100, 150), (90, 130)]


@pytest.mark.parametrize(
    "arch",
    [
        json.dumps([[1, 3, 4, 1], [1, 5, 4, 0], [0, 6, 3, 0], [6, 7, 4, 0], [7, 8, 5, 1], [6, 9, 7, 1], [9, 10, 6, 1]]),
        [[0, 1, 3, "sum"], [5, 2, 4, "sum"], [6, 3, 5, "sum"], [7, 4, 6, "attention"], [8, 4, 7, "attention"]],
    ],
)
def test_inline_architectures_from_config(arch):
    cfg = _cfg(ARCH=arch, NUM_REPEATS=1)
    cfg.MODEL.NASFPN.ATTENTION.POOL = "avg"
    backbone = build_backbone(cfg).eval()
    cells = backbone.neck.nasfpn.blocks[0].cells
    expected = json.loads(arch) if isinstance(arch, str) else arch
    assert [list(c.plan.inputs) + [c.plan.level] for c in cells] == [cell[:3] for cell in expected]
    assert cells[-1].attention_pool == "avg"
    with torch.no_grad():
        outputs = backbone(torch.zeros(1, 3, 128, 128))
    assert [tuple(outputs[name].shape[-2:]) for name in LEVEL_NAMES] == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]


def test_fpn_neck_equals_detectron2_retinanet_fpn_backbone():
    torch.manual_seed(1)
    cfg = _cfg()
    cfg.MODEL.NECK.NAME = "FPN"
    cfg.MODEL.FPN.IN_FEATURES = ["res3", "res4", "res5"]
    ours = build_backbone(cfg).eval()
    reference = build_retinanet_resnet_fpn_backbone(cfg, ShapeSpec(channels=3)).eval()
    mapped = {}
    for key, value in reference.state_dict().items():
        mapped[key if key.startswith("bottom_up.") else "neck.fpn." + key] = value
    ours.load_state_dict(mapped)  # strict: the two have exactly the same parameters
    assert ours.output_shape() == reference.output_shape() and ours.size_divisibility == 128
    image = torch.randn(1, 3, 128, 256)
    with torch.no_grad():
        got, want = ours(image), reference(image)
    assert list(got) == LEVEL_NAMES
    for name in LEVEL_NAMES:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0)


def test_one_shot_neck_arch_selection_through_the_backbone():
    torch.manual_seed(2)
    backbone = build_backbone(_cfg(ONE_SHOT=True)).eval()
    assert backbone.neck.is_supernet
    image = torch.randn(1, 3, 128, 128)
    other = NeckSearchSpace(7).sample(random.Random(3))
    with torch.no_grad():
        published = backbone(image)["p3"]
        backbone.set_arch({"neck": other})
        assert backbone.neck.nasfpn.arch == other
        changed = backbone(image)["p3"]
        standalone = backbone.neck.extract()
        assert not standalone.is_supernet and not standalone.training
        torch.testing.assert_close(standalone(backbone.bottom_up(image))["p3"], changed, rtol=0, atol=1e-5)
        backbone.set_arch("NAS-FPN")  # bare arch: goes to the only searchable part, the neck
        torch.testing.assert_close(backbone(image)["p3"], published, rtol=0, atol=0)
        backbone.set_neck_arch(other)
        torch.testing.assert_close(backbone(image)["p3"], changed, rtol=0, atol=0)
    assert not torch.allclose(published, changed)
    with pytest.raises(ValueError, match="bottom-up ResNet has no architecture to set"):
        backbone.set_backbone_arch([0, 1, 2])
    with pytest.raises(ValueError, match="set_arch keys \\['head'\\] unknown"):
        backbone.set_arch({"head": 1})
    with pytest.raises(ValueError, match="neck architecture has 5 cells, expected 7"):
        backbone.set_neck_arch(NeckSearchSpace(5).sample(random.Random(0)))


def test_level_residual_and_output_norm_init_keys_reach_the_neck():
    """LEVEL_RESIDUAL + OUTPUT_NORM_INIT 0: every neck path is the input stage at init, and the extracted neck keeps
    the residual."""
    torch.manual_seed(3)
    backbone = build_backbone(_cfg(ONE_SHOT=True, LEVEL_RESIDUAL=True, OUTPUT_NORM_INIT=0.0)).eval()
    image = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        features = backbone.bottom_up(image)
        inputs = backbone.neck.nasfpn.input_stage([features[name] for name in ("res3", "res4", "res5")])
        for arch in ["NAS-FPN", NeckSearchSpace(7).sample(random.Random(4))]:
            backbone.set_neck_arch(arch)
            outputs = backbone(image)
            for name, expected in zip(LEVEL_NAMES, inputs):
                torch.testing.assert_close(outputs[name], expected, rtol=0, atol=0)
        assert all(block.level_residual for block in backbone.neck.extract().nasfpn.blocks)


def test_fixed_neck_refuses_set_arch():
    backbone = build_backbone(_cfg())
    with pytest.raises(ValueError, match="fixed architecture; build it with MODEL.NASFPN.ONE_SHOT = True"):
        backbone.neck.set_arch("NAS-FPN")
    with pytest.raises(ValueError, match="neck NASFPN has no architecture to set"):
        backbone.set_neck_arch("NAS-FPN")
    with pytest.raises(ValueError, match="the searchable parts are \\[\\]"):
        backbone.set_arch("NAS-FPN")


def test_bad_neck_configs_raise_clear_errors():
    cfg = _cfg()
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res4", "res5"]
    with pytest.raises(ValueError, match=r"\['res3'\] not produced by the bottom-up backbone.*RESNETS.OUT_FEATURES"):
        build_backbone(cfg)
    cfg = _cfg(neck={"IN_FEATURES": ["res2", "res3", "res4"]})
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4"]
    with pytest.raises(ValueError, match="have strides \\[4, 8, 16\\]; the neck needs C3, C4, C5 with strides"):
        build_backbone(cfg)
    with pytest.raises(ValueError, match="cannot be build_nasfpn_backbone itself"):
        build_backbone(_cfg(neck={"BOTTOM_UP": "build_nasfpn_backbone"}))
    with pytest.raises(ValueError, match="neck cell 1: both inputs are node 1"):
        build_backbone(_cfg(ARCH="3,1,1,3 | 3,0,1,1 | 4,0,0,6 | 3,0,6,7 | 2,1,7,8 | 0,1,6,9 | 1,1,9,10"))


def test_detnas_supernet_bottom_up_with_one_shot_nasfpn():
    from detnas_d2.modeling.config import add_detnas_backbone_config
    from detnas_d2.space.backbone import BackboneSearchSpace

    torch.manual_seed(3)
    cfg = _cfg(neck={"BOTTOM_UP": "build_detnas_backbone"}, ONE_SHOT=True)
    add_detnas_backbone_config(cfg)
    cfg.MODEL.DETNAS.ARCH = None  # supernet
    cfg.MODEL.DETNAS.WIDTH_MULT = 0.25
    cfg.MODEL.DETNAS.NORM = "BN"
    cfg.MODEL.DETNAS.OUT_FEATURES = ["res3", "res4", "res5"]
    backbone = build_backbone(cfg).eval()
    assert type(backbone.bottom_up).__name__ == "DetNASBackbone" and backbone.bottom_up.is_supernet
    rng = random.Random(4)
    backbone_arch, neck_arch = BackboneSearchSpace("small").sample(rng), NeckSearchSpace(7).sample(rng)
    backbone.set_arch({"backbone": backbone_arch, "neck": neck_arch})
    assert list(backbone.bottom_up.arch) == backbone_arch and backbone.neck.nasfpn.arch == neck_arch
    with torch.no_grad():
        outputs = backbone(torch.randn(2, 3, 128, 128))
    assert [tuple(outputs[name].shape) for name in LEVEL_NAMES] == [(2, 32, 128 >> k, 128 >> k) for k in range(3, 8)]
    with pytest.raises(ValueError, match="the searchable parts are \\['backbone', 'neck'\\]"):
        backbone.set_arch(neck_arch)


@pytest.mark.e2e
def test_published_r50_nasfpn_retinanet_config_builds_and_trains_a_step():
    """configs/nasfpn_retinanet.yaml as shipped (ResNet-50 + NAS-FPN 7@256); only CPU-side settings changed."""
    from detnas_d2.config import add_detnas_config

    cfg = add_detnas_config(get_cfg())
    cfg.merge_from_file(os.path.join(os.path.dirname(__file__), "..", "configs", "nasfpn_retinanet.yaml"))
    cfg.merge_from_list(
        [
            "MODEL.DEVICE",
            "cpu",
            "MODEL.WEIGHTS",
            "",
            "MODEL.RESNETS.NORM",
            "BN",
            "MODEL.NASFPN.NORM",
            "BN",
            "MODEL.RETINANET.NORM",
            "BN",
        ]
    )  # SyncBN needs GPUs
    assert cfg.MODEL.RESNETS.DEPTH == 50 and cfg.MODEL.NASFPN.NUM_REPEATS == 7 and cfg.MODEL.NASFPN.CHANNELS == 256
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    inputs = _training_inputs()
    with EventStorage():
        losses = model(inputs)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is not None for p in model.backbone.neck.nasfpn.blocks[6].cells[0].conv_norm.parameters())
