"""FLOPs and parameter counts of DetNAS backbones, plus fvcore-based reference counts.

FLOPs = multiply-adds of Conv2d ((C_in/groups) * C_out * k_h * k_w * H_out * W_out) and Linear
(in * out) only; BN, ReLU, pooling and the channel split are free; input 1x3x224x224 by default
(the counting convention of DetNAS, Chen et al. 2019, and SPOS, Guo et al. 2020). Two variants:
backbone-only (stem + choice blocks; the DetNAS search constraint) and full classifier (+ last
1x1 conv + FC; SPOS / the DetNAS ImageNet sampler).

:class:`BackboneCostModel` builds a per-position, per-choice lookup table once per layout and
input size, by running the real modules of :mod:`detnas_d2.nn` on shape-only ("meta") tensors,
so costing a candidate is a few additions. The fvcore functions count a built model instead;
tests check that both agree exactly.
"""

import functools
from dataclasses import dataclass
from typing import Any, List, Sequence, Tuple, Union

import torch
from torch import nn

from ..nn.blocks import CandidateBlock, build_stem
from ..nn.norm import norm_factory
from ..nn.shufflenet import ClassifierHead
from ..space.backbone import NUM_CHOICES, BackboneLayout, parse_architecture, space_layout

#: ImageNet classes of the classification head
IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class Cost:
    """Multiply-adds and trainable parameters of a network part."""

    flops: int = 0
    params: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.params + other.params)


def _module_cost(module: nn.Module, input_shape: Tuple[int, ...]) -> Tuple[Cost, Tuple[int, ...]]:
    """Conv + linear multiply-adds and parameters of one eval forward of the meta-device ``module``.

    Returns the cost and the output shape; each Conv2d / Linear counts its weight size once per output position.
    """
    flops = 0

    def count(layer: nn.Module, _inputs, output: torch.Tensor) -> None:
        nonlocal flops
        if isinstance(layer, nn.Conv2d):
            flops += layer.weight.numel() * output.shape[0] * output.shape[2:].numel()
        else:
            flops += layer.weight.numel() * output.shape[:-1].numel()

    handles = [m.register_forward_hook(count) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            output = module.eval()(torch.empty(input_shape, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return Cost(flops, sum(p.numel() for p in module.parameters())), tuple(output.shape)


@functools.lru_cache(maxsize=1024)
def _block_cost(choice: int, c_in: int, c_out: int, stride: int, height: int, width: int, norm_affine: bool):
    """Cost and output shape of the :class:`CandidateBlock` ``choice`` on a ``c_in`` x ``height`` x ``width`` input
    (cached: the stride-1 positions of a stage, and cost models of one space, share their blocks)."""
    with torch.device("meta"):
        block = CandidateBlock(choice, c_in, c_out, stride, norm_factory("BN", affine=norm_affine))
    return _module_cost(block, (1, c_in, height, width))


def _as_size(input_size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    """(height, width) from an int or a pair."""
    if isinstance(input_size, int):
        return input_size, input_size
    height, width = input_size
    return int(height), int(width)


class BackboneCostModel:
    """Exact FLOPs / parameter counts of fixed networks of one layout, by lookup table.

    Matches ``ShuffleNetV2Fixed(arch, space, width_mult, layout, norm_affine=..., style=...,
    num_classes=num_classes)`` exactly, since the table is measured on the same stem, candidate blocks
    and head: parameters count conv/linear weights and biases plus 2*C per normalisation layer when
    ``norm_affine`` (use False for affine-free BN or FrozenBN, whose statistics are buffers).

    Args:
        space: backbone search space name ("small" or "large").
        width_mult: channel multiplier applied to the layout.
        layout: widths overriding the space's own (e.g. a widened registered architecture).
        input_size: input height and width (an int for a square input).
        style: "detnas" (biased stem and head convs) or "spos" (bias-free).
        norm_affine: whether normalisation layers carry trainable scale and shift.
        num_classes: classes of the classification head (counted with ``include_classifier``).
    """

    def __init__(
        self,
        space: str = "small",
        width_mult: float = 1.0,
        layout: BackboneLayout | None = None,
        input_size: Union[int, Sequence[int]] = 224,
        style: str = "detnas",
        norm_affine: bool = True,
        num_classes: int = IMAGENET_CLASSES,
    ):
        self.space = space
        base = space_layout(space) if layout is None else layout
        self.layout = base.scaled(width_mult)
        self.layout.check()
        norm = norm_factory("BN", affine=norm_affine)
        bias = style == "detnas"
        with torch.device("meta"):
            stem = build_stem(3, self.layout.stem_channels, norm, bias=bias)
            head = ClassifierHead(self.layout.stage_channels[-1], self.layout.head_channels, num_classes, norm, style)
        self.stem_cost, shape = _module_cost(stem, (1, 3, *_as_size(input_size)))
        self.table: List[Tuple[Cost, ...]] = []
        for c_in, c_out, stride in self.layout.block_channels():
            row = [_block_cost(choice, c_in, c_out, stride, *shape[2:], norm_affine) for choice in range(NUM_CHOICES)]
            self.table.append(tuple(cost for cost, _ in row))
            shape = row[0][1]
        self.head_cost, _ = _module_cost(head, shape)

    def cost(self, arch: Any, include_classifier: bool = False) -> Cost:
        """Cost of the fixed network of ``arch`` (any encoding form of this space)."""
        encoding = parse_architecture(arch, space=self.space).encoding
        parts = [self.stem_cost] + [row[choice] for row, choice in zip(self.table, encoding)]
        if include_classifier:
            parts.append(self.head_cost)
        return Cost(sum(part.flops for part in parts), sum(part.params for part in parts))

    def flops(self, arch: Any, include_classifier: bool = False) -> int:
        """Multiply-adds of stem + blocks (+ last 1x1 conv + FC if ``include_classifier``)."""
        return self.cost(arch, include_classifier).flops

    def params(self, arch: Any, include_classifier: bool = False) -> int:
        """Trainable parameters of stem + blocks (+ classification head if ``include_classifier``)."""
        return self.cost(arch, include_classifier).params

    def bounds(self, metric: str = "flops", include_classifier: bool = False) -> Tuple[int, int]:
        """Smallest and largest ``metric`` ("flops" or "params") over all architectures of the space."""
        if metric not in ("flops", "params"):
            raise ValueError(f"metric must be 'flops' or 'params', got {metric!r}")
        fixed = getattr(self.stem_cost, metric) + (getattr(self.head_cost, metric) if include_classifier else 0)
        per_position = [[getattr(cost, metric) for cost in row] for row in self.table]
        return fixed + sum(map(min, per_position)), fixed + sum(map(max, per_position))


@functools.lru_cache(maxsize=32)
def _cached_cost_model(space: str, layout: BackboneLayout, width_mult: float, input_size: Tuple[int, int]):
    """Shared cost models for :func:`backbone_flops` (DetNAS style, affine norms)."""
    return BackboneCostModel(space, width_mult, layout, input_size)


def backbone_flops(
    arch: Any,
    width_mult: float = 1.0,
    include_classifier: bool = False,
    input_size: Union[int, Sequence[int]] = 224,
    space: str | None = None,
) -> int:
    """FLOPs of ``arch`` with its own widths (a registered name brings its layout, e.g. 3.8G)."""
    resolved = parse_architecture(arch, space=space)
    model = _cached_cost_model(resolved.space, resolved.layout, width_mult, _as_size(input_size))
    return model.flops(resolved.encoding, include_classifier)


def _conv_linear_analysis(model, inputs):
    """An fvcore analysis of ``model(*inputs)`` counting only conv and linear multiply-adds."""
    from fvcore.nn.jit_analysis import JitModelAnalysis
    from fvcore.nn.jit_handles import addmm_flop_jit, conv_flop_jit, linear_flop_jit

    analysis = JitModelAnalysis(model, inputs).set_op_handle(
        "aten::_convolution", conv_flop_jit, "aten::linear", linear_flop_jit, "aten::addmm", addmm_flop_jit
    )
    return analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)


def fvcore_conv_linear_flops(model, input_size: Union[int, Sequence[int]] = 224) -> int:
    """fvcore's conv + linear multiply-adds of a backbone network on one 3xHxW input (eval mode)."""
    import torch

    height, width = _as_size(input_size)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return int(_conv_linear_analysis(model, (torch.zeros(1, 3, height, width),)).total())
    finally:
        model.train(was_training)


def detector_flops(model, height: int = 800, width: int = 1333, conv_linear_only: bool = False) -> int:
    """FLOPs of a detectron2 detector on one zero image of ``height`` x ``width`` (eval mode).

    Default: detectron2's FlopCountAnalysis, i.e. fvcore's handles (conv, linear/matmul/einsum,
    batch/group norm, upsampling, adaptive pooling, grid sampling) minus detectron2's ignored
    element-wise ops and NMS; RoI heads count the proposals of that image. With
    ``conv_linear_only`` only conv and linear multiply-adds are counted (the DetNAS counter).
    """
    import torch
    from detectron2.export import TracingAdapter
    from detectron2.utils.analysis import FlopCountAnalysis

    image = torch.zeros(3, height, width, device=next(model.parameters()).device)
    inputs = [{"image": image, "height": height, "width": width}]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if conv_linear_only:
                adapter = TracingAdapter(model, inputs, allow_non_tensor=True)
                analysis = _conv_linear_analysis(adapter, adapter.flattened_inputs)
            else:
                analysis = FlopCountAnalysis(model, inputs).unsupported_ops_warnings(False)
                analysis = analysis.uncalled_modules_warnings(False)
            return int(analysis.total())
    finally:
        model.train(was_training)
