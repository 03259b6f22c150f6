"""ShuffleNetV2-style DetNAS backbones: the one-shot supernet and fixed-architecture networks.

Both share one module layout: ``stem``, ``blocks.<i>.choices.<c>`` (a candidate block of
:mod:`detnas_d2.nn.blocks`) and an optional classification ``head``. The supernet holds all four
candidates per position and runs exactly one path per forward; a fixed network holds only the
chosen candidate, under the same name, so a supernet state dict restricted to one path loads
directly into it. Fixed networks record their encoding in the ``architecture`` buffer, and loading
a state dict recorded for another architecture raises ValueError naming both.

Forward returns a dict: stage outputs ``res2..res5`` (strides 4/8/16/32, as in the detection
configs of megvii-model/DetNAS) and, with a head, ImageNet logits under ``linear``. Input
convention of the Megvii reference code: raw BGR 0-255, no mean/std.
Pure PyTorch: no detectron2 or fvcore import.
"""

from typing import Any, Dict, Sequence, Tuple

import torch
from torch import nn

from ..space.backbone import (
    NUM_CHOICES,
    STAGE_NAMES,
    BackboneLayout,
    ResolvedArchitecture,
    format_architecture,
    is_registered_architecture,
    parse_architecture,
    space_layout,
)
from .blocks import CandidateBlock, NormFactory, build_stem
from .norm import norm_factory
from .sharing import WEIGHT_SHARING_MODES, check_tied_entries, share_kernels, tied_entries

STYLES = ("detnas", "spos")
#: output name of the classification head's logits
LOGITS_NAME = "linear"
#: stride of each stage output relative to the input
FEATURE_STRIDES = {name: 2 ** (index + 2) for index, name in enumerate(STAGE_NAMES)}
#: length of the ``architecture`` buffer (encoding padded with -1: same shape for every space, so
#: detectron2's checkpointer never drops it as a shape mismatch)
ARCH_RECORD_LENGTH = 64
ARCH_RECORD_PAD = -1


def encode_arch_record(encoding: Sequence[int]) -> torch.Tensor:
    """The ``architecture`` buffer value recording ``encoding``."""
    if len(encoding) > ARCH_RECORD_LENGTH:
        raise ValueError(f"cannot record an encoding longer than {ARCH_RECORD_LENGTH} choices")
    record = torch.full((ARCH_RECORD_LENGTH,), ARCH_RECORD_PAD, dtype=torch.int64)
    record[: len(encoding)] = torch.tensor(list(encoding), dtype=torch.int64)
    return record


def decode_arch_record(record: torch.Tensor) -> Tuple[int, ...]:
    """The encoding stored in an ``architecture`` buffer value."""
    return tuple(int(v) for v in record.flatten().tolist() if v != ARCH_RECORD_PAD)


class ClassifierHead(nn.Module):
    """ImageNet head: 1x1 conv -> BN -> ReLU -> global avg pool -> FC, with the style's dropout.

    "detnas": biased 1x1 conv, Dropout2d(0.2) before pooling, FC with bias; "spos": bias-free 1x1
    conv, Dropout(0.1) after pooling, FC without bias (megvii-model/DetNAS and megvii-model/SinglePathOneShot code).

    Args:
        in_channels: channels of the last stage.
        head_channels: channels of the 1x1 conv before pooling.
        num_classes: number of logits.
        norm: ``make(channels)`` building the normalisation layer.
        style: "detnas" or "spos".
    """

    def __init__(self, in_channels: int, head_channels: int, num_classes: int, norm: NormFactory, style: str):
        super().__init__()
        detnas = style == "detnas"
        self.conv_last = nn.Sequential(
            nn.Conv2d(in_channels, head_channels, 1, 1, 0, bias=detnas), norm(head_channels), nn.ReLU(inplace=True)
        )
        self.dropout_before_pool = nn.Dropout2d(0.2) if detnas else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout_after_pool = nn.Identity() if detnas else nn.Dropout(0.1)
        self.classifier = nn.Linear(head_channels, num_classes, bias=detnas)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, num_classes)."""
        x = self.pool(self.dropout_before_pool(self.conv_last(x)))
        return self.classifier(self.dropout_after_pool(torch.flatten(x, 1)))


class ChoicePosition(nn.Module):
    """One block position: the candidates it holds, keyed by choice id ("0".."3")."""

    def __init__(self, choices: Sequence[int], in_channels: int, out_channels: int, stride: int, norm: NormFactory):
        super().__init__()
        self.choices = nn.ModuleDict(
            {str(c): CandidateBlock(c, in_channels, out_channels, stride, norm) for c in choices}
        )

    def forward(self, x: torch.Tensor, choice: int) -> torch.Tensor:
        """Run the candidate ``choice``."""
        return self.choices[str(choice)](x)


class _ShuffleNetV2(nn.Module):
    """Shared construction, initialisation and forward of the supernet and fixed networks."""

    def __init__(
        self,
        layout: BackboneLayout,
        choices_per_position: Sequence[Sequence[int]],
        norm: NormFactory,
        style: str,
        in_channels: int,
        num_classes: int | None,
        out_features: Sequence[str] | None,
        zero_init_last_norm: bool,
    ):
        super().__init__()
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        valid_classes = num_classes is None or (type(num_classes) is int and num_classes >= 1)
        if not valid_classes:
            raise ValueError(f"num_classes must be a positive int or None, got {num_classes!r}")
        layout.check()
        self.layout = layout
        self.style = style
        self.stem = build_stem(in_channels, layout.stem_channels, norm, bias=style == "detnas")
        self.blocks = nn.ModuleList(
            ChoicePosition(choices, c_in, c_out, stride, norm)
            for choices, (c_in, c_out, stride) in zip(choices_per_position, layout.block_channels())
        )
        self.head = None
        if num_classes is not None:
            self.head = ClassifierHead(layout.stage_channels[-1], layout.head_channels, num_classes, norm, style)
        available = STAGE_NAMES + ((LOGITS_NAME,) if self.head is not None else ())
        if out_features is None:
            out_features = (LOGITS_NAME,) if self.head is not None else STAGE_NAMES
        for name in out_features:
            if name not in available:
                raise ValueError(f"unknown output feature {name!r}; available: {', '.join(available)}")
        self.out_features = tuple(out_features)
        self._stage_ends = layout.stage_end_blocks()
        self._init_weights()
        if zero_init_last_norm:
            self._zero_init_last_norms()

    @property
    def feature_channels(self) -> Dict[str, int]:
        """Channels of each stage output (res2..res5)."""
        return dict(zip(STAGE_NAMES, self.layout.stage_channels))

    def _init_weights(self) -> None:
        """As the DetNAS / SPOS reference code: stem conv N(0, 0.01); other convs N(0, 1/weight.shape[1]); norm
        gamma 1, beta 1e-4; Linear N(0, 0.01) with zero bias; conv biases 0."""
        stem_conv = self.stem[0]
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                std = 0.01 if module is stem_conv else 1.0 / module.weight.shape[1]
                nn.init.normal_(module.weight, 0.0, std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm)) and module.affine:
                nn.init.ones_(module.weight)
                nn.init.constant_(module.bias, 1e-4)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _zero_init_last_norms(self) -> None:
        """Start every candidate's main branch at zero output (gamma 0 in its last norm), as ResNets zero their
        last BN: each block starts as pass-through plus zeros, which keeps deep (super)networks trainable."""
        for position in self.blocks:
            for block in position.choices.values():
                norm = block.branch_main[-2]
                if getattr(norm, "weight", None) is not None:
                    nn.init.zeros_(norm.weight)

    def _forward_path(self, x: torch.Tensor, encoding: Sequence[int]) -> Dict[str, torch.Tensor]:
        """Run stem and the blocks of ``encoding``; collect the requested outputs."""
        outputs = {}
        x = self.stem(x)
        for index, (position, choice) in enumerate(zip(self.blocks, encoding)):
            x = position(x, choice)
            name = self._stage_ends.get(index)
            if name in self.out_features:
                outputs[name] = x
        if self.head is not None and LOGITS_NAME in self.out_features:
            outputs[LOGITS_NAME] = self.head(x)
        return outputs


class ShuffleNetV2Supernet(_ShuffleNetV2):
    """One-shot supernet: all 4 candidates at each position; one path per forward.

    Set the path with :meth:`set_arch` (e.g. once per iteration by a training hook) or pass
    ``arch`` to :meth:`forward`. ``layout`` overrides the space's widths (same depths required).
    ``weight_sharing`` "none" keeps the four candidates independent (DetNAS/SPOS reference); "kernel" ties
    them as :mod:`detnas_d2.nn.sharing` describes, which lets small-budget supernets learn.

    Args:
        space: backbone search space, "small" (20 blocks) or "large" (40 blocks).
        width_mult: channel multiplier applied to the layout.
        layout: widths overriding the space's own (same depths).
        norm: "BN", "SyncBN", "GN" or "FrozenBN" (see :func:`detnas_d2.nn.norm.norm_factory`); not FrozenBN, whose
            statistics could not be recalibrated per path.
        norm_affine: whether the normalisation layers have a learnable scale and shift (False: SPOS supernet).
        bn_momentum: BN momentum in the PyTorch convention (weight of the new batch statistics).
        style: "detnas" (biased stem and head convs, DetNAS dropout) or "spos" (bias-free, SPOS dropout).
        in_channels: channels of the input image.
        num_classes: classes of an ImageNet-style head, or None for a detection backbone without head.
        out_features: outputs to return among res2..res5 and "linear" (default: "linear" with a head, else
            res2..res5).
        zero_init_last_norm: start every candidate's main branch at zero output (gamma 0 in its last norm).
        weight_sharing: "none" (independent candidates) or "kernel" (see :mod:`detnas_d2.nn.sharing`).
    """

    def __init__(
        self,
        space: str = "small",
        width_mult: float = 1.0,
        layout: BackboneLayout | None = None,
        norm: str = "BN",
        norm_affine: bool = True,
        bn_momentum: float = 0.1,
        style: str = "detnas",
        in_channels: int = 3,
        num_classes: int | None = None,
        out_features: Sequence[str] | None = None,
        zero_init_last_norm: bool = False,
        weight_sharing: str = "none",
    ):
        if weight_sharing not in WEIGHT_SHARING_MODES:
            raise ValueError(f"weight_sharing must be one of {WEIGHT_SHARING_MODES}, got {weight_sharing!r}")
        base = space_layout(space)
        layout = _checked_layout(base if layout is None else layout, base, space)
        super().__init__(
            layout.scaled(width_mult),
            [range(NUM_CHOICES)] * layout.num_blocks,
            norm_factory(norm, affine=norm_affine, momentum=bn_momentum, allow_frozen=False),
            style,
            in_channels,
            num_classes,
            out_features,
            zero_init_last_norm,
        )
        self.space = space
        self.weight_sharing = weight_sharing
        if weight_sharing == "kernel":
            for position in self.blocks:
                share_kernels(position.choices)
                ties = tied_entries(position)
                position._register_load_state_dict_pre_hook(
                    lambda state_dict, prefix, *_, ties=ties: check_tied_entries(ties, state_dict, prefix)
                )
        self._arch: Tuple[int, ...] | None = None

    @property
    def arch(self) -> Tuple[int, ...] | None:
        """The current path, or None before :meth:`set_arch`."""
        return self._arch

    def set_arch(self, arch: Any) -> None:
        """Select the path run by later forwards (any encoding form of this space)."""
        self._arch = parse_architecture(arch, space=self.space).encoding

    def forward(self, x: torch.Tensor, arch: Any = None) -> Dict[str, torch.Tensor]:
        """Run the path ``arch`` (validated) or, if None, the one set by :meth:`set_arch`."""
        if arch is not None:
            encoding = parse_architecture(arch, space=self.space).encoding
        elif self._arch is not None:
            encoding = self._arch
        else:
            raise RuntimeError("supernet path not set: call set_arch(arch) or pass arch to forward()")
        return self._forward_path(x, encoding)


class ShuffleNetV2Fixed(_ShuffleNetV2):
    """A fixed-architecture network holding only the chosen candidate per position.

    ``arch`` takes any encoding form; a registered name brings its own space and widths (so
    ``ShuffleNetV2Fixed("DetNASNet-3.8G")`` is the widened model), ``layout`` overrides them.

    Args:
        arch: the architecture: a registered name, an encoding list or its string form.
        space: the space of a list or string encoding (ignored for a registered name).
        width_mult: channel multiplier applied to the layout.
        layout: widths overriding the architecture's own (same depths).
        norm: "BN", "SyncBN", "GN" or "FrozenBN" (see :func:`detnas_d2.nn.norm.norm_factory`).
        norm_affine: whether the normalisation layers have a learnable scale and shift (False: SPOS supernet).
        bn_momentum: BN momentum in the PyTorch convention (weight of the new batch statistics).
        style: "detnas" (biased stem and head convs, DetNAS dropout) or "spos" (bias-free, SPOS dropout).
        in_channels: channels of the input image.
        num_classes: classes of an ImageNet-style head, or None for a detection backbone without head.
        out_features: outputs to return among res2..res5 and "linear" (default: "linear" with a head, else
            res2..res5).
        zero_init_last_norm: start every candidate's main branch at zero output (gamma 0 in its last norm).
    """

    def __init__(
        self,
        arch: Any,
        space: str | None = None,
        width_mult: float = 1.0,
        layout: BackboneLayout | None = None,
        norm: str = "BN",
        norm_affine: bool = True,
        bn_momentum: float = 0.1,
        style: str = "detnas",
        in_channels: int = 3,
        num_classes: int | None = None,
        out_features: Sequence[str] | None = None,
        zero_init_last_norm: bool = False,
    ):
        resolved = parse_architecture(arch, space=space)
        base = resolved.layout
        layout = _checked_layout(base if layout is None else layout, base, resolved.space)
        super().__init__(
            layout.scaled(width_mult),
            [(choice,) for choice in resolved.encoding],
            norm_factory(norm, affine=norm_affine, momentum=bn_momentum),
            style,
            in_channels,
            num_classes,
            out_features,
            zero_init_last_norm,
        )
        self.space = resolved.space
        self.resolved_arch: ResolvedArchitecture = resolved
        self.register_buffer("architecture", encode_arch_record(resolved.encoding))

    @property
    def arch(self) -> Tuple[int, ...]:
        """The fixed encoding."""
        return self.resolved_arch.encoding

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Run the fixed path."""
        return self._forward_path(x, self.resolved_arch.encoding)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "architecture"
        if key in state_dict:
            recorded = decode_arch_record(state_dict[key])
            if recorded != self.arch:
                try:
                    recorded_text = format_architecture(recorded)
                except ValueError:
                    recorded_text = ",".join(map(str, recorded))
                raise ValueError(
                    f"checkpoint holds weights of architecture {recorded_text} but this network is "
                    f"architecture {self.resolved_arch}; build the network with the checkpoint's "
                    "architecture or extract that subnet from a supernet checkpoint"
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _checked_layout(layout: BackboneLayout, base: BackboneLayout, space: str) -> BackboneLayout:
    """``layout`` after checking that its depths are those of ``space``."""
    if layout.stage_depths != base.stage_depths:
        raise ValueError(f"layout depths {layout.stage_depths} do not match the {space} space {base.stage_depths}")
    return layout


def build_shufflenet(arch: Any = None, space: str = "small", weight_sharing: str = "none", **kwargs) -> _ShuffleNetV2:
    """A supernet of ``space`` if ``arch`` is None or empty, else the fixed network of ``arch``.

    For a fixed network ``space`` only applies to list/string encodings: a registered name brings
    its own space and widths. ``weight_sharing`` applies to supernets only (a fixed network holds one
    candidate per position). Other keyword arguments go to the network constructor.
    """
    if arch is None or (isinstance(arch, (str, list, tuple)) and len(arch) == 0):
        return ShuffleNetV2Supernet(space=space, weight_sharing=weight_sharing, **kwargs)
    return ShuffleNetV2Fixed(arch, space=None if is_registered_architecture(arch) else space, **kwargs)
