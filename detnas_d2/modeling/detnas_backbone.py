"""detectron2 glue for the DetNAS backbones: Backbone wrapper, registry builders (keys in ``modeling/config.py``).

Drop-in use with detectron2's stock FPN configs (e.g. COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml
or retinanet_R_50_FPN_1x.yaml): call :func:`detnas_d2.config.add_detnas_config`, then set

    MODEL.BACKBONE.NAME: "build_detnas_fpn_backbone"   # or "build_detnas_retinanet_backbone"
    MODEL.DETNAS.ARCH: "COCO-FPN-300M"                  # None/"" = supernet, path set at run time
    MODEL.WEIGHTS: path to DetNAS weights (or "" to train from scratch)

The builders read the bottom-up outputs from MODEL.FPN.IN_FEATURES (res2..res5 resp. res3..res5
in the stock configs), so no FPN key changes; MODEL.RESNETS.* is ignored. Megvii/DetNAS weights
expect raw BGR 0-255 input (megvii-model/SinglePathOneShot#5): such configs should also set
MODEL.PIXEL_MEAN [0, 0, 0] and MODEL.PIXEL_STD [1, 1, 1] (not forced here). The DetNAS recipe additionally
uses MODEL.FPN.NORM "SyncBN" and a 4conv1fc box head with SyncBN (megvii-model/DetNAS detection configs).
"""

import math
from typing import Any, Dict, Sequence, Tuple

import torch
from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, FPN, Backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool, LastLevelP6P7

from ..nn.shufflenet import FEATURE_STRIDES, ShuffleNetV2Supernet, build_shufflenet
from ..space.backbone import (
    BackboneLayout,
    is_registered_architecture,
    parse_architecture,
    smallest_width_mult,
    space_layout,
)

__all__ = [
    "DetNASBackbone",
    "build_detnas_backbone",
    "build_detnas_fpn_backbone",
    "build_detnas_retinanet_backbone",
    "detnas_bottom_up",
    "find_detnas_backbone",
]


class DetNASBackbone(Backbone):
    """detectron2 Backbone around a DetNAS supernet or fixed network (``self.body``).

    Outputs res2..res5 at strides 4/8/16/32. For a supernet, a training or search hook selects the
    path with :meth:`set_arch` (see :func:`find_detnas_backbone`).

    Args:
        body: a :class:`~detnas_d2.nn.shufflenet.ShuffleNetV2Supernet` or
            :class:`~detnas_d2.nn.shufflenet.ShuffleNetV2Fixed` without classification head.
    """

    def __init__(self, body: torch.nn.Module):
        super().__init__()
        self.body = body
        self._out_features = list(body.out_features)
        self._out_feature_channels = {name: body.feature_channels[name] for name in self._out_features}
        self._out_feature_strides = {name: FEATURE_STRIDES[name] for name in self._out_features}

    @property
    def is_supernet(self) -> bool:
        """True if the body holds all candidates and needs a path before each forward."""
        return isinstance(self.body, ShuffleNetV2Supernet)

    @property
    def arch(self):
        """The current (supernet) or fixed encoding, as a tuple; None for an unset supernet."""
        return self.body.arch

    def set_arch(self, arch: Any) -> None:
        """Select the supernet path for later forwards; fixed networks refuse."""
        if not self.is_supernet:
            raise ValueError(
                f"set_arch needs a supernet backbone; this one is fixed to {self.body.resolved_arch} "
                "(set MODEL.DETNAS.ARCH to None or '' for a supernet)"
            )
        self.body.set_arch(arch)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Feature maps by name."""
        return self.body(x)


def _base_layout(arch: Any, space: str) -> Tuple[BackboneLayout, str]:
    """The full-width layout of ``arch`` (None/empty: the ``space`` supernet), and a name for it in messages."""
    if arch is None or (isinstance(arch, (str, list, tuple)) and len(arch) == 0):
        return space_layout(space), f"the {space} supernet"
    resolved = parse_architecture(arch, space=None if is_registered_architecture(arch) else space)
    return resolved.layout, f"architecture {arch!r} ({resolved.space} space)"


def check_width_mult(width_mult: Any, arch: Any = None, space: str = "small") -> None:
    """``width_mult`` (MODEL.DETNAS.WIDTH_MULT) must be a positive number whose rounded widths form valid blocks."""
    if (
        isinstance(width_mult, bool)
        or not isinstance(width_mult, (int, float))
        or not width_mult > 0
        or not math.isfinite(width_mult)
    ):
        raise ValueError(
            f"MODEL.DETNAS.WIDTH_MULT = {width_mult!r}: the width multiplier must be a positive "
            "number (1.0 = published widths)"
        )
    layout, what = _base_layout(arch, space)
    scaled = layout.scaled(width_mult)
    try:
        scaled.check()
    except ValueError:
        widths = f"stem {scaled.stem_channels}, stages {'/'.join(map(str, scaled.stage_channels))}"
        raise ValueError(
            f"MODEL.DETNAS.WIDTH_MULT = {width_mult}: the width multiplier gives channel widths ({widths}) that "
            f"cannot form {what}: each stage must be wider than its input. The smallest width multiplier allowed "
            f"is {smallest_width_mult(layout)}"
        ) from None


def detnas_bottom_up(
    arch: Any = None,
    *,
    space: str = "small",
    width_mult: float = 1.0,
    norm: str = "SyncBN",
    norm_affine: bool = True,
    bn_momentum: float = 0.1,
    style: str = "detnas",
    weight_sharing: str = "none",
    zero_init_last_norm: bool = False,
    in_channels: int = 3,
    out_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
) -> DetNASBackbone:
    """The DetNAS Backbone from plain arguments (each one the MODEL.DETNAS key of its name, same default), so a
    LazyConfig can ``L(detnas_bottom_up)(arch="COCO-FPN-300M", ...)``; the yacs builders call it too."""
    check_width_mult(width_mult, arch, space)
    body = build_shufflenet(
        arch,
        space=space,
        width_mult=width_mult,
        norm=norm,
        norm_affine=norm_affine,
        bn_momentum=bn_momentum,
        style=style,
        weight_sharing=weight_sharing,
        zero_init_last_norm=zero_init_last_norm,
        in_channels=in_channels,
        out_features=list(out_features),
    )
    return DetNASBackbone(body)


#: the MODEL.DETNAS keys that are :func:`detnas_bottom_up` arguments of the same name in lower case
_PLAIN_KEYS = (
    "SPACE",
    "WIDTH_MULT",
    "NORM",
    "NORM_AFFINE",
    "BN_MOMENTUM",
    "STYLE",
    "WEIGHT_SHARING",
    "ZERO_INIT_LAST_NORM",
)


def _build_bottom_up(cfg: CfgNode, input_shape: ShapeSpec, out_features: Sequence[str] | None) -> DetNASBackbone:
    """The DetNAS Backbone described by MODEL.DETNAS with the given outputs."""
    node = cfg.MODEL.DETNAS
    options = {key.lower(): node[key] for key in _PLAIN_KEYS}
    return detnas_bottom_up(node.ARCH, in_channels=input_shape.channels, out_features=out_features, **options)


@BACKBONE_REGISTRY.register()
def build_detnas_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> DetNASBackbone:
    """DetNAS backbone alone, outputs MODEL.DETNAS.OUT_FEATURES."""
    return _build_bottom_up(cfg, input_shape, cfg.MODEL.DETNAS.OUT_FEATURES)


@BACKBONE_REGISTRY.register()
def build_detnas_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> FPN:
    """DetNAS + FPN for Faster R-CNN: FPN on MODEL.FPN.IN_FEATURES (res2..res5) -> P2-P6 (max-pool P6)."""
    bottom_up = _build_bottom_up(cfg, input_shape, cfg.MODEL.FPN.IN_FEATURES)
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


@BACKBONE_REGISTRY.register()
def build_detnas_retinanet_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> FPN:
    """DetNAS + FPN for RetinaNet: FPN on MODEL.FPN.IN_FEATURES (res3..res5) -> P3-P7, P6/P7 from P5."""
    bottom_up = _build_bottom_up(cfg, input_shape, cfg.MODEL.FPN.IN_FEATURES)
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelP6P7(out_channels, out_channels, in_feature="p5"),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


def find_detnas_backbone(model: torch.nn.Module) -> DetNASBackbone:
    """The (single) DetNASBackbone inside ``model`` (unwraps DDP and FPN), e.g. for a path hook."""
    found = [module for module in model.modules() if isinstance(module, DetNASBackbone)]
    if len(found) != 1:
        raise ValueError(f"expected exactly one DetNASBackbone in the model, found {len(found)}")
    return found[0]
