"""NAS-FPN neck in pure PyTorch: merging cells, pyramid blocks, the stacked neck, its one-shot supernet and DropBlock.

Semantics follow the authors' TF reference code (tensorflow/tpu ``nasfpn.py``, for Ghiasi et al., CVPR 2019):
parameter-free resampling (one max-pool with kernel = stride = 2^k, or nearest upsampling), ``sum`` or global-pooling
attention, unused nodes summed into the output cell of their level, then ReLU -> 3x3 conv -> norm -> optional
DropBlock. No detectron2 import.
"""

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from detnas_d2.space.neck import LEVELS, NUM_INPUTS, NUM_OUTPUT_CELLS, NeckArchSpec, resolve_neck_arch

#: global pooling used to compute the attention weights
ATTENTION_POOLS = ("max", "avg")
#: which cell input provides the attention weights: the coarser original level (TF; the first input on a tie), the
#: finer one (what mmdet's NAS-FPN ends up doing; the second input on a tie), or always the cell's second input
ATTENTION_SOURCES = ("coarser", "finer", "second")

NormFactory = Optional[Callable[[int], nn.Module]]


@dataclass(frozen=True)
class CellPlan:
    """Parameter-free wiring of one merging cell inside a pyramid block."""

    node: int  # pool index of this cell's output
    inputs: Tuple[int, int]  # pool indices of the two inputs, in encoding order
    input_levels: Tuple[int, int]  # pyramid levels of the two inputs
    level: int  # output level
    op: str  # "sum" or "attention"
    attention_input: int | None  # pool index whose global pooling gives the weights (None for "sum")
    unused_inputs: Tuple[int, ...]  # same-level nodes nobody consumed, summed in before the post-op (output cells)
    is_output: bool


def plan_pyramid_block(arch: NeckArchSpec, attention_source: str = "coarser") -> List[CellPlan]:
    """Wire a block from its cell encoding, including the reference rule for summing unused nodes into outputs.

    Consumer counts are updated cell by cell; an output cell at level L absorbs every existing level-L node with no
    consumer yet and marks it used, so each node is summed in at most once (tensorflow/tpu ``nasfpn.py``).
    """
    if attention_source not in ATTENTION_SOURCES:
        raise ValueError(f"attention_source {attention_source!r} unknown; allowed: {list(ATTENTION_SOURCES)}")
    cells = resolve_neck_arch(arch)
    node_levels = list(LEVELS)
    consumers = [0] * NUM_INPUTS
    first_output_cell = len(cells) - NUM_OUTPUT_CELLS
    plans = []
    for index, (input1, input2, level, op) in enumerate(cells):
        consumers[input1] += 1
        consumers[input2] += 1
        is_output = index >= first_output_cell
        unused = ()
        if is_output:
            unused = tuple(
                node
                for node, (node_level, count) in enumerate(zip(node_levels, consumers))
                if count == 0 and node_level == level
            )
            for node in unused:
                consumers[node] += 1
        attention_input = None
        if op == "attention":
            first_is_coarser = node_levels[input1] >= node_levels[input2]
            attention_input = {
                "coarser": input1 if first_is_coarser else input2,
                "finer": input2 if first_is_coarser else input1,
                "second": input2,
            }[attention_source]
        plans.append(
            CellPlan(
                node=NUM_INPUTS + index,
                inputs=(input1, input2),
                input_levels=(node_levels[input1], node_levels[input2]),
                level=level,
                op=op,
                attention_input=attention_input,
                unused_inputs=unused,
                is_output=is_output,
            )
        )
        node_levels.append(level)
        consumers.append(0)
    return plans


def resample_to_level(x: torch.Tensor, level: int, target_level: int, target_size: Sequence[int]) -> torch.Tensor:
    """Bring a map from ``level`` to ``target_level`` without parameters and return it at exactly ``target_size``.

    Finer maps take ONE max-pool with kernel = stride = 2^(target - level) (ceil mode, so odd sizes never crash);
    coarser maps take nearest upsampling to the target size. A size that still differs (odd inputs) is fixed by
    nearest resizing, a no-op for inputs divisible by 128.
    """
    if level < target_level:
        factor = 2 ** (target_level - level)
        x = F.max_pool2d(x, kernel_size=factor, stride=factor, ceil_mode=True)
    if tuple(x.shape[-2:]) != tuple(target_size):
        x = F.interpolate(x, size=tuple(target_size), mode="nearest")
    return x


class DropBlock2d(nn.Module):
    """DropBlock (Ghiasi et al., NeurIPS 2018): during training zero whole ``block_size`` squares, rescale the rest.

    Seeds are drawn only where a full block fits, with the rate that drops about ``drop_prob`` of the activations;
    the block is clipped to the feature size (kept odd). Identity in eval mode or when ``drop_prob`` is 0.

    Args:
        drop_prob: fraction of activations to drop, in [0, 1).
        block_size: side of the dropped squares (a positive odd int).
    """

    def __init__(self, drop_prob: float, block_size: int = 3):
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"DropBlock drop_prob must be in [0, 1), got {drop_prob}")
        if block_size < 1 or block_size % 2 == 0:
            raise ValueError(f"DropBlock block_size must be a positive odd int, got {block_size}")
        self.drop_prob = drop_prob
        self.block_size = block_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply DropBlock to ``x`` in training mode."""
        if not self.training or self.drop_prob == 0.0:
            return x
        height, width = x.shape[-2:]
        block = min(self.block_size, height, width)
        if block % 2 == 0:
            block -= 1
        seed_rate = self.drop_prob * height * width / (block**2 * (height - block + 1) * (width - block + 1))
        valid_centres = torch.zeros(height, width, dtype=torch.bool, device=x.device)
        valid_centres[block // 2 : height - block // 2, block // 2 : width - block // 2] = True
        seeds = (torch.rand_like(x) < seed_rate) & valid_centres
        keep = 1.0 - F.max_pool2d(seeds.to(x.dtype), kernel_size=block, stride=1, padding=block // 2)
        return x * keep * (keep.numel() / keep.sum().clamp(min=1.0))

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, block_size={self.block_size}"


class ConvNorm(nn.Sequential):
    """Conv (no bias when a norm follows) + norm, no activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, norm_layer: NormFactory):
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=norm_layer is None)
        super().__init__(conv, norm_layer(out_channels) if norm_layer is not None else nn.Identity())


class MergingCell(nn.Module):
    """One merging cell: resample two pool nodes to the output level, sum or attend, add unused nodes, post-op.

    The post-op (ReLU -> 3x3 conv -> norm -> DropBlock) is the only learnable part and does not depend on the wiring,
    so :meth:`set_plan` can rewire a cell while keeping its weights (one-shot supernet).

    Args:
        plan: the cell's wiring (inputs, output level, op, unused nodes summed in).
        channels: channels of every pool node.
        norm_layer: ``make(channels)`` building the norm after the 3x3 conv (None: a biased conv, no norm).
        attention_pool: global pooling of the attention op, "max" (TF reference) or "avg" (mmdetection).
        drop_prob: DropBlock drop probability after the norm (0: off).
        block_size: DropBlock square side.
    """

    def __init__(
        self,
        plan: CellPlan,
        channels: int,
        norm_layer: NormFactory,
        attention_pool: str = "max",
        drop_prob: float = 0.0,
        block_size: int = 3,
    ):
        super().__init__()
        if attention_pool not in ATTENTION_POOLS:
            raise ValueError(f"attention_pool {attention_pool!r} unknown; allowed: {list(ATTENTION_POOLS)}")
        self.attention_pool = attention_pool
        self.plan = plan
        self.conv_norm = ConvNorm(channels, channels, 3, norm_layer)
        self.drop_block = DropBlock2d(drop_prob, block_size)

    def set_plan(self, plan: CellPlan) -> None:
        """Rewire the cell (inputs, level, op, unused nodes); weights are untouched."""
        self.plan = plan

    def merge(self, pool: Sequence[torch.Tensor], level_sizes: Dict[int, Sequence[int]]) -> torch.Tensor:
        """The cell's parameter-free part: binary op on the resampled inputs plus the unused same-level nodes."""
        plan = self.plan
        size = level_sizes[plan.level]
        first, second = (
            resample_to_level(pool[node], node_level, plan.level, size)
            for node, node_level in zip(plan.inputs, plan.input_levels)
        )
        if plan.op == "sum":
            merged = first + second
        else:
            source, other = (first, second) if plan.attention_input == plan.inputs[0] else (second, first)
            if self.attention_pool == "max":
                pooled = source.amax(dim=(2, 3), keepdim=True)
            else:
                pooled = source.mean(dim=(2, 3), keepdim=True)
            merged = source + other * torch.sigmoid(pooled)
        for node in plan.unused_inputs:
            merged = merged + pool[node]
        return merged

    def forward(self, pool: Sequence[torch.Tensor], level_sizes: Dict[int, Sequence[int]]) -> torch.Tensor:
        """The cell's output node: post-op of :meth:`merge`."""
        return self.drop_block(self.conv_norm(F.relu(self.merge(pool, level_sizes))))

    def extra_repr(self) -> str:
        plan = self.plan
        return (
            f"node={plan.node}, inputs={plan.inputs}, level=P{plan.level}, op={plan.op}, "
            f"attention_input={plan.attention_input}, unused_inputs={plan.unused_inputs}"
        )


class PyramidBlock(nn.Module):
    """A NAS-FPN block: P3..P7 in, cells appended to the node pool in order, P3..P7 (the output cells) out.

    Args:
        arch: the cells: a registered name (e.g. "NAS-FPN"), a JSON string or a list of cells.
        channels: channels of every pool node.
        norm_layer: ``make(channels)`` building each cell's norm.
        attention_pool: global pooling of the attention op, "max" or "avg".
        attention_source: which input the attention weights come from: "coarser" (TF reference), "finer" or
            "second" (mmdetection).
        drop_prob: DropBlock drop probability in every cell (0: off).
        block_size: DropBlock square side.
        level_residual: each output cell adds the block's input of its level to its output (the same-level
            input-to-output edge of EfficientDet's BiFPN), so a stacked block refines its input pyramid.
        output_norm_init: initial scale (gamma) of the output cells' norms; 0 with ``level_residual`` starts the
            block as the identity, whatever its wiring (the zero-init-residual trick of ResNets).
    """

    def __init__(
        self,
        arch: NeckArchSpec,
        channels: int,
        norm_layer: NormFactory,
        attention_pool: str = "max",
        attention_source: str = "coarser",
        drop_prob: float = 0.0,
        block_size: int = 3,
        level_residual: bool = False,
        output_norm_init: float = 1.0,
    ):
        super().__init__()
        self.attention_source = attention_source
        self.level_residual = level_residual
        plans = plan_pyramid_block(arch, attention_source)
        self.cells = nn.ModuleList(
            MergingCell(plan, channels, norm_layer, attention_pool, drop_prob, block_size) for plan in plans
        )
        if output_norm_init != 1.0:
            for cell in self.cells[len(self.cells) - NUM_OUTPUT_CELLS :]:
                norm = cell.conv_norm[1]
                if getattr(norm, "weight", None) is None:
                    raise ValueError(
                        "output_norm_init other than 1 needs a norm with a learnable scale after each conv"
                    )
                nn.init.constant_(norm.weight, output_norm_init)
        self.output_nodes = self._output_nodes(plans)

    @staticmethod
    def _output_nodes(plans: Sequence[CellPlan]) -> List[int]:
        """Pool index of the output for each level P3..P7."""
        node_of_level = {plan.level: plan.node for plan in plans if plan.is_output}
        return [node_of_level[level] for level in LEVELS]

    def set_arch(self, arch: NeckArchSpec) -> None:
        """Rewire all cells to ``arch`` (same number of cells), keeping each position's weights."""
        plans = plan_pyramid_block(resolve_neck_arch(arch, num_cells=len(self.cells)), self.attention_source)
        for cell, plan in zip(self.cells, plans):
            cell.set_plan(plan)
        self.output_nodes = self._output_nodes(plans)

    def forward(self, inputs: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """``[P3..P7]`` in, ``[P3..P7]`` out (each output at its input's size)."""
        level_sizes = {level: tuple(x.shape[-2:]) for level, x in zip(LEVELS, inputs)}
        pool = list(inputs)
        for cell in self.cells:
            node = cell(pool, level_sizes)
            if self.level_residual and cell.plan.is_output:
                node = node + inputs[LEVELS.index(cell.plan.level)]
            pool.append(node)
        return [pool[node] for node in self.output_nodes]


class NASFPNInputStage(nn.Module):
    """Block inputs, TF variant: 1x1 conv + norm (no activation) on C3..C5; P6, P7 by max-pool k2 s2 of P5, P6."""

    def __init__(self, in_channels: Sequence[int], channels: int, norm_layer: NormFactory):
        super().__init__()
        if len(in_channels) != 3:
            raise ValueError(f"NAS-FPN takes 3 backbone features (C3, C4, C5), got in_channels={list(in_channels)}")
        self.projections = nn.ModuleList(ConvNorm(c, channels, 1, norm_layer) for c in in_channels)

    def forward(self, features: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """``[C3, C4, C5]`` -> ``[P3, ..., P7]`` block inputs."""
        if len(features) != len(self.projections):
            raise ValueError(f"NAS-FPN expects {len(self.projections)} features (C3, C4, C5), got {len(features)}")
        pyramid = [projection(x) for projection, x in zip(self.projections, features)]
        for _ in range(len(LEVELS) - len(pyramid)):
            pyramid.append(F.max_pool2d(pyramid[-1], kernel_size=2, stride=2, ceil_mode=True))
        return pyramid


class NASFPN(nn.Module):
    """The NAS-FPN neck: input stage, then ``num_repeats`` pyramid blocks of one architecture, each with own weights.

    ``forward([C3, C4, C5])`` returns ``[P3, ..., P7]`` with ``channels`` channels each.

    Args:
        in_channels: channels of C3, C4, C5.
        arch: the block's cells (see :class:`PyramidBlock`); default the published NAS-FPN block.
        channels: channels of every pyramid level.
        num_repeats: number of stacked blocks.
        norm_layer: ``make(channels)`` building each norm.
        attention_pool: global pooling of the attention op, "max" or "avg".
        attention_source: which input the attention weights come from, "coarser", "finer" or "second".
        drop_prob: DropBlock drop probability in every cell (0: off).
        block_size: DropBlock square side.
        level_residual: output cells add the block input of their level (see :class:`PyramidBlock`).
        output_norm_init: initial scale of the output cells' norms (see :class:`PyramidBlock`).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        arch: NeckArchSpec = "NAS-FPN",
        channels: int = 256,
        num_repeats: int = 7,
        norm_layer: NormFactory = nn.BatchNorm2d,
        attention_pool: str = "max",
        attention_source: str = "coarser",
        drop_prob: float = 0.0,
        block_size: int = 3,
        level_residual: bool = False,
        output_norm_init: float = 1.0,
    ):
        super().__init__()
        if num_repeats < 1:
            raise ValueError(f"num_repeats must be >= 1, got {num_repeats}")
        self.arch = resolve_neck_arch(arch)
        self.channels = channels
        self._options = dict(
            in_channels=list(in_channels),
            channels=channels,
            num_repeats=num_repeats,
            norm_layer=norm_layer,
            attention_pool=attention_pool,
            attention_source=attention_source,
            drop_prob=drop_prob,
            block_size=block_size,
            level_residual=level_residual,
            output_norm_init=output_norm_init,
        )
        self.input_stage = NASFPNInputStage(in_channels, channels, norm_layer)
        self.blocks = nn.ModuleList(
            PyramidBlock(
                self.arch,
                channels,
                norm_layer,
                attention_pool,
                attention_source,
                drop_prob,
                block_size,
                level_residual,
                output_norm_init,
            )
            for _ in range(num_repeats)
        )

    def forward(self, features: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """``[C3, C4, C5]`` -> ``[P3, ..., P7]`` after all blocks."""
        pyramid = self.input_stage(features)
        for block in self.blocks:
            pyramid = block(pyramid)
        return pyramid


class OneShotNASFPN(NASFPN):
    """One-shot neck supernet: one post-op conv + norm per (repeat, cell position) shared by every architecture.

    All wiring decisions (inputs, level, op) are parameter-free and the channels are fixed, so any valid architecture
    with the same number of cells runs on the shared weights. ``set_arch`` picks the path (applied to every repeat);
    ``extract`` builds a standalone :class:`NASFPN` of one architecture with the inherited weights.
    """

    @property
    def num_cells(self) -> int:
        """Cells per block; every architecture passed to ``set_arch`` must have this many."""
        return len(self.arch)

    def set_arch(self, arch: NeckArchSpec) -> None:
        """Select the architecture evaluated by ``forward`` (must have ``num_cells`` cells)."""
        cells = resolve_neck_arch(arch, num_cells=self.num_cells)
        for block in self.blocks:
            block.set_arch(cells)
        self.arch = cells

    def extract(self, arch: NeckArchSpec = None) -> NASFPN:
        """A standalone NASFPN of ``arch`` (default: the current one) holding a copy of the supernet weights."""
        cells = self.arch if arch is None else resolve_neck_arch(arch, num_cells=self.num_cells)
        standalone = NASFPN(arch=cells, **self._options).to(next(self.parameters()).device)
        standalone.load_state_dict(self.state_dict())
        return standalone.train(self.training)
