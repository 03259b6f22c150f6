"""detectron2 glue for pyramid necks: the NECK registry (NAS-FPN, FPN) and the bottom-up + neck backbone.

``build_nasfpn_backbone`` composes any registered bottom-up backbone (``MODEL.NECK.BOTTOM_UP``) with any registered
neck (``MODEL.NECK.NAME``) into one detectron2 ``Backbone`` with outputs p3..p7 (strides 8..128), so configs switch
between NAS-FPN and FPN, or between ResNet and the DetNAS supernet, by name.
"""

import functools
from typing import Dict, Sequence

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone import fpn as d2_fpn
from detectron2.utils.registry import Registry
from torch import nn

from detnas_d2.nn import nasfpn as nasfpn_nn
from detnas_d2.space.neck import LEVELS

NECK_REGISTRY = Registry("NECK")
NECK_REGISTRY.__doc__ = """
Necks: ``NECK_REGISTRY.get(name)(cfg, input_shape)`` with ``input_shape`` the bottom-up ``Dict[str, ShapeSpec]``.
A neck maps the bottom-up feature dict to ``{"p3": ..., "p7": ...}`` and has ``output_shape()``.
"""

#: the bottom-up strides every neck here consumes (C3, C4, C5)
_INPUT_STRIDES = (8, 16, 32)


def _check_neck_inputs(in_features, input_shape: Dict[str, ShapeSpec]) -> None:
    """Raise ValueError unless ``in_features`` exist in ``input_shape`` with strides 8, 16, 32."""
    missing = [name for name in in_features if name not in input_shape]
    if missing:
        raise ValueError(
            f"MODEL.NECK.IN_FEATURES {list(in_features)}: {missing} not produced by the bottom-up backbone, "
            f"which outputs {sorted(input_shape)} (for ResNet set MODEL.RESNETS.OUT_FEATURES)"
        )
    strides = tuple(input_shape[name].stride for name in in_features)
    if strides != _INPUT_STRIDES:
        raise ValueError(
            f"MODEL.NECK.IN_FEATURES {list(in_features)} have strides {list(strides)}; "
            f"the neck needs C3, C4, C5 with strides {list(_INPUT_STRIDES)}"
        )


def _nasfpn_module(input_shape: Dict[str, ShapeSpec], in_features, *, norm: str, one_shot: bool, **options):
    """The pure-torch NAS-FPN (one-shot supernet if ``one_shot``) on ``in_features`` of ``input_shape``."""
    _check_neck_inputs(in_features, input_shape)
    module = nasfpn_nn.OneShotNASFPN if one_shot else nasfpn_nn.NASFPN
    return module(
        in_channels=[input_shape[name].channels for name in in_features],
        norm_layer=functools.partial(get_norm, norm) if norm else None,
        **options,
    )


@NECK_REGISTRY.register()
class NASFPN(nn.Module):
    """NAS-FPN neck (fixed architecture, or the one-shot supernet with ``MODEL.NASFPN.ONE_SHOT``) on C3..C5."""

    @configurable
    def __init__(self, *, in_features, nasfpn: nasfpn_nn.NASFPN):
        """``in_features``: bottom-up names of C3, C4, C5; ``nasfpn``: the pure-torch neck mapping them to P3..P7."""
        super().__init__()
        self.in_features = list(in_features)
        self.nasfpn = nasfpn

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        """Constructor arguments from ``MODEL.NASFPN`` and the bottom-up ``input_shape``."""
        in_features = cfg.MODEL.NECK.IN_FEATURES
        node = cfg.MODEL.NASFPN
        nasfpn = _nasfpn_module(
            input_shape,
            in_features,
            arch=node.ARCH,
            channels=node.CHANNELS,
            num_repeats=node.NUM_REPEATS,
            norm=node.NORM,
            one_shot=node.ONE_SHOT,
            attention_pool=node.ATTENTION.POOL,
            attention_source=node.ATTENTION.SOURCE,
            drop_prob=node.DROPBLOCK.DROP_PROB,
            block_size=node.DROPBLOCK.BLOCK_SIZE,
            level_residual=node.LEVEL_RESIDUAL,
            output_norm_init=node.OUTPUT_NORM_INIT,
        )
        return {"in_features": in_features, "nasfpn": nasfpn}

    @property
    def is_supernet(self) -> bool:
        """True for the one-shot supernet, whose architecture ``set_arch`` can change."""
        return isinstance(self.nasfpn, nasfpn_nn.OneShotNASFPN)

    def _require_one_shot(self) -> None:
        """Raise ValueError unless this neck is the one-shot supernet."""
        if not self.is_supernet:
            raise ValueError("this NAS-FPN neck has a fixed architecture; build it with MODEL.NASFPN.ONE_SHOT = True")

    def set_arch(self, arch) -> None:
        """Select the neck architecture of the one-shot supernet (any form ``resolve_neck_arch`` accepts)."""
        self._require_one_shot()
        self.nasfpn.set_arch(arch)

    def extract(self, arch=None) -> "NASFPN":
        """A fixed-architecture neck of ``arch`` (default: current) with the supernet's weights copied in."""
        self._require_one_shot()
        return NASFPN(in_features=self.in_features, nasfpn=self.nasfpn.extract(arch)).train(self.training)

    def forward(self, features):
        """Bottom-up feature dict -> dict of p3..p7."""
        outputs = self.nasfpn([features[name] for name in self.in_features])
        return {f"p{level}": x for level, x in zip(LEVELS, outputs)}

    def output_shape(self) -> Dict[str, ShapeSpec]:
        """p3..p7 with the neck's channels and strides 8..128."""
        return {f"p{level}": ShapeSpec(channels=self.nasfpn.channels, stride=2**level) for level in LEVELS}


class _GivenFeatures(Backbone):
    """A parameter-free stand-in "bottom-up" that returns the feature dict it is given, so detectron2's FPN can run
    on features computed elsewhere."""

    def __init__(self, input_shape: Dict[str, ShapeSpec]):
        super().__init__()
        self._out_features = list(input_shape)
        self._out_feature_channels = {name: shape.channels for name, shape in input_shape.items()}
        self._out_feature_strides = {name: shape.stride for name, shape in input_shape.items()}

    def forward(self, features):
        """Return the given features unchanged."""
        return features


@NECK_REGISTRY.register()
class FPN(nn.Module):
    """detectron2's RetinaNet-style FPN as a neck: lateral 1x1 + top-down + 3x3 output convs on C3..C5 -> P3..P5,
    and P6, P7 by detectron2's ``LastLevelP6P7`` (stride-2 3x3 convs from C5), i.e. the neck of detectron2's
    ``build_retinanet_resnet_fpn_backbone``.

    Uses detectron2's own keys ``MODEL.FPN.OUT_CHANNELS / NORM / FUSE_TYPE``; inputs from ``MODEL.NECK.IN_FEATURES``.
    """

    @configurable
    def __init__(
        self,
        *,
        input_shape: Dict[str, ShapeSpec],
        in_features,
        out_channels: int,
        norm: str = "",
        fuse_type: str = "sum",
    ):
        """Build ``detectron2.modeling.backbone.fpn.FPN`` over ``in_features`` of ``input_shape``."""
        super().__init__()
        _check_neck_inputs(in_features, input_shape)
        last = in_features[-1]
        top_block = d2_fpn.LastLevelP6P7(input_shape[last].channels, out_channels, in_feature=last)
        self.fpn = d2_fpn.FPN(
            bottom_up=_GivenFeatures({name: input_shape[name] for name in in_features}),
            in_features=in_features,
            out_channels=out_channels,
            norm=norm,
            top_block=top_block,
            fuse_type=fuse_type,
        )

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        """Constructor arguments from ``MODEL.FPN``, ``MODEL.NECK.IN_FEATURES`` and ``input_shape``."""
        return {
            "input_shape": input_shape,
            "in_features": cfg.MODEL.NECK.IN_FEATURES,
            "out_channels": cfg.MODEL.FPN.OUT_CHANNELS,
            "norm": cfg.MODEL.FPN.NORM,
            "fuse_type": cfg.MODEL.FPN.FUSE_TYPE,
        }

    def forward(self, features):
        """Bottom-up feature dict -> dict of p3..p7."""
        return self.fpn(features)

    def output_shape(self) -> Dict[str, ShapeSpec]:
        """p3..p7 as detectron2's FPN reports them."""
        return self.fpn.output_shape()


def build_neck(cfg, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    """The neck named ``cfg.MODEL.NECK.NAME`` built on the bottom-up ``input_shape``."""
    return NECK_REGISTRY.get(cfg.MODEL.NECK.NAME)(cfg, input_shape)


def nasfpn_neck(
    input_shape: Dict[str, ShapeSpec],
    *,
    in_features: Sequence[str] = ("res3", "res4", "res5"),
    norm: str = "BN",
    one_shot: bool = False,
    **options,
) -> "NASFPN":
    """The NAS-FPN neck from plain arguments, for LazyConfigs: ``options`` are those of
    :class:`detnas_d2.nn.nasfpn.NASFPN` (``arch``, ``channels``, ``num_repeats``, ...), ``norm`` a detectron2 norm
    name ("" = none); the yacs ``from_config`` builds the same module from ``MODEL.NASFPN``."""
    module = _nasfpn_module(input_shape, in_features, norm=norm, one_shot=one_shot, **options)
    return NASFPN(in_features=list(in_features), nasfpn=module)


def nasfpn_backbone(bottom_up: Backbone, **neck_options) -> "BottomUpNeckBackbone":
    """``bottom_up`` + :func:`nasfpn_neck` (``neck_options``) as one p3..p7 backbone, the LazyConfig counterpart of
    ``build_nasfpn_backbone``: ``L(nasfpn_backbone)(bottom_up=L(detnas_bottom_up)(...), one_shot=True)``."""
    return BottomUpNeckBackbone(bottom_up, nasfpn_neck(bottom_up.output_shape(), **neck_options))


def _is_searchable(part: nn.Module) -> bool:
    """A part is searchable if it has ``set_arch`` and, where it defines ``is_supernet`` (DetNAS backbone, NAS-FPN
    neck), that is true."""
    return callable(getattr(part, "set_arch", None)) and getattr(part, "is_supernet", True)


class BottomUpNeckBackbone(Backbone):
    """A detectron2 ``Backbone`` = ``bottom_up`` network followed by a ``neck``; outputs p3..p7.

    Architecture selection for one-shot parts: ``set_backbone_arch`` forwards to ``bottom_up.set_arch``,
    ``set_neck_arch`` to ``neck.set_arch``; ``set_arch({"backbone": ..., "neck": ...})`` does both (either key may be
    omitted), and ``set_arch(arch)`` with a non-dict goes to the single searchable part (ValueError if none or both).
    """

    def __init__(self, bottom_up: Backbone, neck: nn.Module):
        super().__init__()
        self.bottom_up = bottom_up
        self.neck = neck
        out_shapes = neck.output_shape()
        self._out_features = list(out_shapes)
        self._out_feature_channels = {name: shape.channels for name, shape in out_shapes.items()}
        self._out_feature_strides = {name: shape.stride for name, shape in out_shapes.items()}

    @property
    def size_divisibility(self) -> int:
        """The coarsest output stride (128 for p7), so every resampling ratio inside the neck is an integer."""
        return max(self._out_feature_strides.values())

    def forward(self, x):
        """Image batch -> neck outputs p3..p7."""
        return self.neck(self.bottom_up(x))

    def set_backbone_arch(self, arch) -> None:
        """Select the path of a one-shot bottom-up network (e.g. the DetNAS supernet)."""
        if not _is_searchable(self.bottom_up):
            name = type(self.bottom_up).__name__
            raise ValueError(f"bottom-up {name} has no architecture to set (not a one-shot supernet)")
        self.bottom_up.set_arch(arch)

    def set_neck_arch(self, arch) -> None:
        """Select the path of a one-shot neck (NAS-FPN with MODEL.NASFPN.ONE_SHOT)."""
        if not _is_searchable(self.neck):
            raise ValueError(f"neck {type(self.neck).__name__} has no architecture to set (needs a one-shot neck)")
        self.neck.set_arch(arch)

    def set_arch(self, arch) -> None:
        """Dict ``{"backbone": ..., "neck": ...}`` sets each part given; any other value goes to the searchable part."""
        if isinstance(arch, dict):
            unknown = sorted(set(arch) - {"backbone", "neck"})
            if unknown:
                raise ValueError(f"set_arch keys {unknown} unknown; allowed: 'backbone', 'neck'")
            if "backbone" in arch:
                self.set_backbone_arch(arch["backbone"])
            if "neck" in arch:
                self.set_neck_arch(arch["neck"])
            return
        parts = (("backbone", self.bottom_up), ("neck", self.neck))
        searchable = [name for name, part in parts if _is_searchable(part)]
        if len(searchable) != 1:
            raise ValueError(
                f"set_arch got a bare architecture but the searchable parts are {searchable}; "
                "pass {'backbone': ..., 'neck': ...} or use set_backbone_arch / set_neck_arch"
            )
        self.set_arch({searchable[0]: arch})


@BACKBONE_REGISTRY.register()
def build_nasfpn_backbone(cfg, input_shape: ShapeSpec) -> BottomUpNeckBackbone:
    """``MODEL.NECK.BOTTOM_UP`` backbone + ``MODEL.NECK.NAME`` neck as one backbone with p3..p7 outputs."""
    bottom_up_name = cfg.MODEL.NECK.BOTTOM_UP
    if bottom_up_name == "build_nasfpn_backbone":
        raise ValueError("MODEL.NECK.BOTTOM_UP cannot be build_nasfpn_backbone itself; name e.g. build_resnet_backbone")
    bottom_up = BACKBONE_REGISTRY.get(bottom_up_name)(cfg, input_shape)
    return BottomUpNeckBackbone(bottom_up, build_neck(cfg, bottom_up.output_shape()))
