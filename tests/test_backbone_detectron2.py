"""detectron2 integration: config keys, drop-in FPN / RetinaNet builders, checkpoints, detector FLOPs."""

import importlib.util
import os

import pytest
import torch
from detectron2 import model_zoo
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone, build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from detnas_d2.cost import backbone_flops, detector_flops, fvcore_conv_linear_flops
from detnas_d2.modeling.config import add_detnas_backbone_config
from detnas_d2.modeling.detnas_backbone import (
    DetNASBackbone,
    build_detnas_backbone,
    find_detnas_backbone,
)
from detnas_d2.modeling.weight_inheritance import extract_subnet_checkpoint
from detnas_d2.space.backbone import get_architecture

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STOCK_CONFIGS = {
    "build_detnas_fpn_backbone": "COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml",
    "build_detnas_retinanet_backbone": "COCO-Detection/retinanet_R_50_FPN_1x.yaml",
}


def _stock_cfg(builder, arch):
    """A detectron2 model-zoo config with only the backbone name and architecture changed, shrunk for CPU tests."""
    cfg = get_cfg()
    add_detnas_backbone_config(cfg)
    cfg.merge_from_file(model_zoo.get_config_file(STOCK_CONFIGS[builder]))
    cfg.MODEL.BACKBONE.NAME = builder
    cfg.MODEL.DETNAS.ARCH = arch
    # test-only shrinking (a user keeps the defaults)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.DETNAS.WIDTH_MULT = 0.25
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 100
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 50
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
    return cfg


def _synthetic_batch():
    """Two 64x64 BGR 0-255 images with a few boxes each."""
    torch.manual_seed(0)
    batch = []
    annotations = (([[4.0, 6.0, 40.0, 50.0]], [1]), ([[10.0, 10.0, 30.0, 60.0], [30.0, 2.0, 62.0, 20.0]], [0, 5]))
    for boxes, classes in annotations:
        instances = Instances((64, 64), gt_boxes=Boxes(torch.tensor(boxes)), gt_classes=torch.tensor(classes))
        batch.append({"image": torch.rand(3, 64, 64) * 255, "instances": instances})
    return batch


def _train_one_step(model):
    """One SGD step on the synthetic batch; returns the losses and the backbone parameters before the step."""
    model.train()
    before = {k: v.detach().clone() for k, v in model.backbone.bottom_up.named_parameters()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    with EventStorage():
        losses = model(_synthetic_batch())
    total = sum(losses.values())
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    return losses, before


@pytest.mark.parametrize(
    "builder, arch",
    [("build_detnas_fpn_backbone", "COCO-FPN-300M"), ("build_detnas_retinanet_backbone", "COCO-RetinaNet-300M")],
)
def test_stock_model_zoo_config_trains_one_step_with_a_named_architecture(builder, arch):
    cfg = _stock_cfg(builder, arch)
    model = build_model(cfg)
    backbone = find_detnas_backbone(model)
    assert not backbone.is_supernet and backbone.arch == get_architecture(arch).encoding
    expected_levels = {"build_detnas_fpn_backbone": [2, 3, 4, 5, 6], "build_detnas_retinanet_backbone": [3, 4, 5, 6, 7]}
    assert list(model.backbone.output_shape()) == [f"p{i}" for i in expected_levels[builder]]
    if builder == "build_detnas_retinanet_backbone":
        top = model.backbone.top_block
        assert top.in_feature == "p5" and top.p6.in_channels == cfg.MODEL.FPN.OUT_CHANNELS
    losses, before = _train_one_step(model)
    assert losses and all(torch.isfinite(v) for v in losses.values())
    after = dict(model.backbone.bottom_up.named_parameters())
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_supernet_detector_trains_the_path_set_by_a_hook():
    cfg = _stock_cfg("build_detnas_fpn_backbone", "")
    model = build_model(cfg)
    backbone = find_detnas_backbone(model)
    assert backbone.is_supernet and backbone.arch is None
    backbone.set_arch("SPOS")
    _, before = _train_one_step(model)
    after = dict(backbone.named_parameters())
    prefix = "body.blocks.0.choices."
    changed = {k.split(".")[4] for k in before if k.startswith(prefix) and not torch.equal(before[k], after[k])}
    assert changed == {"2"}  # only the sampled candidate at position 0 is updated


def test_backbone_output_shapes_follow_the_reference():
    cfg = get_cfg()
    add_detnas_backbone_config(cfg)
    cfg.MODEL.DETNAS.NORM = "FrozenBN"
    expected = {
        "COCO-FPN-300M": (64, 160, 320, 640),
        "DetNASNet": (96, 240, 480, 960),
        "DetNASNet-3.8G": (172, 432, 864, 1728),
    }
    for arch, channels in expected.items():
        cfg.MODEL.DETNAS.ARCH = arch
        backbone = build_detnas_backbone(cfg, ShapeSpec(channels=3))
        shapes = backbone.output_shape()
        assert {k: (v.channels, v.stride) for k, v in shapes.items()} == {
            name: (c, s) for name, c, s in zip(["res2", "res3", "res4", "res5"], channels, [4, 8, 16, 32])
        }
    cfg.MODEL.BACKBONE.NAME = "build_detnas_backbone"
    cfg.MODEL.DETNAS.ARCH = None
    cfg.MODEL.DETNAS.NORM = "BN"
    cfg.MODEL.DETNAS.WIDTH_MULT = 0.25
    cfg.MODEL.DETNAS.OUT_FEATURES = ["res4", "res5"]
    supernet = build_backbone(cfg)
    assert isinstance(supernet, DetNASBackbone) and supernet.is_supernet
    assert {k: v.channels for k, v in supernet.output_shape().items()} == {"res4": 80, "res5": 160}


def test_config_is_idempotent_and_accepts_every_arch_form():
    cfg = get_cfg()
    add_detnas_backbone_config(cfg)
    cfg.MODEL.DETNAS.WIDTH_MULT = 0.5
    add_detnas_backbone_config(cfg)
    assert cfg.MODEL.DETNAS.WIDTH_MULT == 0.5
    assert set(cfg.MODEL.DETNAS) == {
        "SPACE", "ARCH", "WIDTH_MULT", "NORM", "NORM_AFFINE", "BN_MOMENTUM", "STYLE", "OUT_FEATURES",
        "WEIGHT_SHARING", "ZERO_INIT_LAST_NORM",
    }  # fmt: skip
    cfg.MODEL.DETNAS.WIDTH_MULT = 0.25
    cfg.MODEL.DETNAS.NORM = "BN"
    encoding = get_architecture("COCO-FPN-300M").encoding
    forms = ["COCO-FPN-300M", "2120-2112-33130031-3132", "2,1,2,0,2,1,1,2,3,3,1,3,0,0,3,1,3,1,3,2", str(list(encoding))]
    for form in forms:
        node = cfg.clone()
        node.merge_from_list(["MODEL.DETNAS.ARCH", form])
        assert build_detnas_backbone(node, ShapeSpec(channels=3)).arch == encoding, form
    cfg.MODEL.DETNAS.ARCH = [0] * 19
    with pytest.raises(ValueError, match="architecture has 19 choices but its space needs exactly 20"):
        build_detnas_backbone(cfg, ShapeSpec(channels=3))


def test_fixed_backbone_refuses_set_arch():
    cfg = get_cfg()
    add_detnas_backbone_config(cfg)
    cfg.MODEL.DETNAS.ARCH = "SPOS"
    cfg.MODEL.DETNAS.WIDTH_MULT = 0.25
    backbone = build_detnas_backbone(cfg, ShapeSpec(channels=3))
    with pytest.raises(ValueError, match="set_arch needs a supernet backbone; this one is fixed to SPOS"):
        backbone.set_arch("COCO-FPN-300M")


def _load_extract_tool():
    """tools/extract_subnet.py as a module (tools/ is not a package)."""
    path = os.path.join(REPO_ROOT, "tools", "extract_subnet.py")
    spec = importlib.util.spec_from_file_location("extract_subnet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_extracted_detector_checkpoint_loads_into_fixed_detector_and_matches_supernet(tmp_path, capsys):
    tool = _load_extract_tool()
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--help"])
    assert exit_info.value.code == 0 and "--arch" in capsys.readouterr().out

    supernet_model = build_model(_stock_cfg("build_detnas_fpn_backbone", None)).eval()
    supernet_path, fixed_path = str(tmp_path / "supernet.pth"), str(tmp_path / "fixed.pth")
    torch.save({"model": supernet_model.state_dict(), "iteration": 10}, supernet_path)
    tool.main([supernet_path, "--arch", "COCO-FPN-300M", "--output", fixed_path])
    assert "2120-2112-33130031-3132" in capsys.readouterr().out

    fixed_model = build_model(_stock_cfg("build_detnas_fpn_backbone", "COCO-FPN-300M")).eval()
    extra_entries = DetectionCheckpointer(fixed_model).load(fixed_path)
    assert "iteration" not in extra_entries  # supernet training state is dropped
    find_detnas_backbone(supernet_model).set_arch("COCO-FPN-300M")
    images = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        expected, actual = supernet_model.backbone(images), fixed_model.backbone(images)
    assert list(expected) == ["p2", "p3", "p4", "p5", "p6"]
    for name in expected:
        assert (expected[name] - actual[name]).abs().max().item() <= 1e-5, name

    other_model = build_model(_stock_cfg("build_detnas_fpn_backbone", "COCO-RetinaNet-300M"))
    with pytest.raises(ValueError, match=r"architecture 2120-2112-33130031-3132 .*COCO-RetinaNet-300M \(2311-"):
        DetectionCheckpointer(other_model).load(fixed_path)
    large = build_model(_stock_cfg("build_detnas_fpn_backbone", "DetNASNet"))
    with pytest.raises(ValueError, match=r"architecture 2120-2112-33130031-3132 .*DetNASNet \(0031"):
        DetectionCheckpointer(large).load(fixed_path)
    wrapped = extract_subnet_checkpoint(torch.load(supernet_path), "SPOS")
    assert set(wrapped) == {"model"}


def test_detector_flops_counts_backbone_exactly_and_more_for_the_detector():
    model = build_model(_stock_cfg("build_detnas_fpn_backbone", "COCO-FPN-300M"))
    bottom_up = model.backbone.bottom_up
    backbone_only = backbone_flops("COCO-FPN-300M", width_mult=0.25, input_size=64)
    assert fvcore_conv_linear_flops(bottom_up, 64) == backbone_only
    conv_linear = detector_flops(model, 64, 64, conv_linear_only=True)
    assert conv_linear > backbone_only
    assert detector_flops(model, 64, 64) >= conv_linear
    assert model.training  # the training flag is restored
