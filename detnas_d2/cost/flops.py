"""FLOPs and parameter counts of DetNAS backbones (spec 1.6), plus fvcore-based reference counts.

FLOPs = multiply-adds of Conv2d ((C_in/groups) * C_out * k_h * k_w * H_out * W_out) and Linear
(in * out) only; BN, ReLU, pooling and the channel split are free; input 1x3x224x224 by default.
Two variants: backbone-only (stem + choice blocks; the DetNAS search constraint) and full
classifier (+ last 1x1 conv + FC; SPOS / the DetNAS ImageNet sampler).

:class:`BackboneCostModel` computes both analytically from a per-position, per-choice lookup
table (built once per layout and input size), so costing a candidate is a few additions. The
fvcore functions count a built model instead; tests check that both agree exactly.
"""
import functools
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple, Union

from ..space.backbone import (
    CHOICE_KERNELS,
    NUM_CHOICES,
    XCEPTION_CHOICE,
    BackboneLayout,
    parse_architecture,
    space_layout,
)

#: ImageNet classes of the classification head
IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class Cost:
    """Multiply-adds and trainable parameters of a network part."""

    flops: int = 0
    params: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.params + other.params)


class _Tally:
    """Accumulates the cost of a chain of layers while tracking the spatial size."""

    def __init__(self, height: int, width: int, norm_affine: bool):
        self.height, self.width = height, width
        self.norm_affine = norm_affine
        self.cost = Cost()

    def conv(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = False):
        """A kxk conv with padding k//2 (updates the spatial size)."""
        self.height = (self.height + 2 * (kernel // 2) - kernel) // stride + 1
        self.width = (self.width + 2 * (kernel // 2) - kernel) // stride + 1
        weights = (c_in // groups) * c_out * kernel * kernel
        self.cost += Cost(weights * self.height * self.width, weights + (c_out if bias else 0))

    def norm(self, channels: int):
        """A normalisation layer: no FLOPs, 2*C parameters if affine."""
        self.cost += Cost(0, 2 * channels if self.norm_affine else 0)

    def linear(self, c_in: int, c_out: int, bias: bool):
        """A fully connected layer on a pooled vector."""
        self.cost += Cost(c_in * c_out, c_in * c_out + (c_out if bias else 0))


def _block_cost(choice: int, c_in: int, c_out: int, stride: int, height: int, width: int, norm_affine: bool):
    """Cost and output size of one candidate block (mirrors detnas_d2.nn.blocks.CandidateBlock)."""
    kernel = CHOICE_KERNELS[choice]
    mid = c_out // 2
    main_in = c_in // 2 if stride == 1 else c_in
    main_out = c_out - main_in
    main = _Tally(height, width, norm_affine)
    if choice != XCEPTION_CHOICE:
        main.conv(main_in, mid, 1)
        main.norm(mid)
        main.conv(mid, mid, kernel, stride, groups=mid)
        main.norm(mid)
        main.conv(mid, main_out, 1)
        main.norm(main_out)
    else:
        for index, (unit_in, unit_out) in enumerate(((main_in, mid), (mid, mid), (mid, main_out))):
            main.conv(unit_in, unit_in, kernel, stride if index == 0 else 1, groups=unit_in)
            main.norm(unit_in)
            main.conv(unit_in, unit_out, 1)
            main.norm(unit_out)
    cost = main.cost
    if stride == 2:
        proj = _Tally(height, width, norm_affine)
        proj.conv(c_in, c_in, kernel, 2, groups=c_in)
        proj.norm(c_in)
        proj.conv(c_in, c_in, 1)
        proj.norm(c_in)
        cost += proj.cost
    return cost, main.height, main.width


def _as_size(input_size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    """(height, width) from an int or a pair."""
    if isinstance(input_size, int):
        return input_size, input_size
    height, width = input_size
    return int(height), int(width)


class BackboneCostModel:
    """Exact FLOPs / parameter counts of fixed networks of one layout, by lookup table.

    Matches ``ShuffleNetV2Fixed(arch, space, width_mult, layout, norm_affine=..., style=...,
    num_classes=num_classes)`` exactly: parameters count conv/linear weights and biases plus
    2*C per normalisation layer when ``norm_affine`` (use False for affine-free BN or FrozenBN).
    """

    def __init__(
        self,
        space: str = "small",
        width_mult: float = 1.0,
        layout: Optional[BackboneLayout] = None,
        input_size: Union[int, Sequence[int]] = 224,
        style: str = "detnas",
        norm_affine: bool = True,
        num_classes: int = IMAGENET_CLASSES,
    ):
        self.space = space
        base = space_layout(space) if layout is None else layout
        self.layout = base.scaled(width_mult)
        self.layout.check()
        height, width = _as_size(input_size)
        bias = style == "detnas"
        stem = _Tally(height, width, norm_affine)
        stem.conv(3, self.layout.stem_channels, 3, 2, bias=bias)
        stem.norm(self.layout.stem_channels)
        self.stem_cost = stem.cost
        height, width = stem.height, stem.width
        self.table: List[Tuple[Cost, ...]] = []
        for c_in, c_out, stride in self.layout.block_channels():
            row = [
                _block_cost(choice, c_in, c_out, stride, height, width, norm_affine) for choice in range(NUM_CHOICES)
            ]
            self.table.append(tuple(cost for cost, _, _ in row))
            _, height, width = row[0]
        head = _Tally(height, width, norm_affine)
        head.conv(self.layout.stage_channels[-1], self.layout.head_channels, 1, bias=bias)
        head.norm(self.layout.head_channels)
        head.linear(self.layout.head_channels, num_classes, bias=bias)
        self.head_cost = head.cost

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
    space: Optional[str] = None,
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
    ``conv_linear_only`` only conv and linear multiply-adds are counted (the spec 1.6 counter).
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
