"""The DetNAS / SPOS backbone search space: layouts, architecture encodings, named architectures.

An architecture is a list of ints, one per choice block in network order (stage 1 first), each
one of ``0 = ShuffleNetV2 k3, 1 = k5, 2 = k7, 3 = Xception-like`` (megvii-model/DetNAS). The small
space has 20 blocks (stage depths 4/4/8/4), the large space 40 (8/8/16/8).

Accepted input forms (:func:`parse_architecture`):

* a list or tuple of ints, e.g. ``[2, 1, 2, 0, 2, 1, 1, 2, ...]``;
* a compact string of single digits, optionally with ``-`` between stages:
  ``"2120-2112-33130031-3132"`` (the dashes are cosmetic, only the digits count);
* a separated string: ints separated by commas, ``/`` or whitespace: ``"2,1,2,0 / 2,1,1,2 / ..."``;
* a registered name such as ``"COCO-FPN-300M"`` (:func:`list_architectures`). A name also fixes
  the space and the channel widths (e.g. ``"DetNASNet-3.8G"`` is the widened large space).

Pure Python (no torch): the search engine and the cost model use it without building networks.
"""

import math
import numbers
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

from .base import SearchSpace

#: human-readable names of the four candidate blocks, indexed by choice id
CHOICE_NAMES = ("k3", "k5", "k7", "xception")
NUM_CHOICES = len(CHOICE_NAMES)
#: the Xception-like candidate (three depthwise 3x3 units); choices 0..2 are ShuffleNetV2 units
XCEPTION_CHOICE = 3
#: depthwise kernel size of each candidate (also used by its stride-2 projection branch)
CHOICE_KERNELS = (3, 5, 7, 3)
#: names of the stage outputs, from stride 4 to stride 32
STAGE_NAMES = ("res2", "res3", "res4", "res5")
#: channel widths are rounded to multiples of this (the stride-1 channel split needs C % 4 == 0)
CHANNEL_DIVISOR = 4


@dataclass(frozen=True)
class BackboneLayout:
    """Depths and channel widths of a ShuffleNetV2-style backbone (megvii-model/DetNAS)."""

    stage_depths: Tuple[int, ...]
    stage_channels: Tuple[int, ...]
    stem_channels: int
    #: width of the classification head's 1x1 conv (ImageNet pretraining only)
    head_channels: int

    @property
    def num_blocks(self) -> int:
        """Number of choice blocks, i.e. the length of an encoding."""
        return sum(self.stage_depths)

    def block_channels(self) -> List[Tuple[int, int, int]]:
        """``(in_channels, out_channels, stride)`` of every choice block, in network order."""
        specs = []
        in_channels = self.stem_channels
        for depth, out_channels in zip(self.stage_depths, self.stage_channels):
            for index in range(depth):
                stride = 2 if index == 0 else 1
                specs.append((in_channels, out_channels, stride))
                in_channels = out_channels
        return specs

    def stage_end_blocks(self) -> Dict[int, str]:
        """Map from the index of each stage's last block to the stage output name (res2..res5)."""
        ends, total = {}, 0
        for name, depth in zip(STAGE_NAMES, self.stage_depths):
            total += depth
            ends[total - 1] = name
        return ends

    def scaled(self, width_mult: float) -> "BackboneLayout":
        """This layout with every width multiplied by ``width_mult`` (rounded to the nearest multiple of 4)."""
        if not (isinstance(width_mult, numbers.Real) and not isinstance(width_mult, bool)) or not (
            math.isfinite(width_mult) and width_mult > 0
        ):
            raise ValueError(f"width_mult must be a positive finite number, got {width_mult!r}")
        if width_mult == 1:
            return self
        return BackboneLayout(
            stage_depths=self.stage_depths,
            stage_channels=tuple(_round_channels(c * width_mult) for c in self.stage_channels),
            stem_channels=_round_channels(self.stem_channels * width_mult),
            head_channels=_round_channels(self.head_channels * width_mult),
        )

    def check(self) -> None:
        """Raise ValueError if the widths cannot form valid blocks (see detnas_d2.nn.blocks)."""
        if len(self.stage_depths) != len(STAGE_NAMES) or len(self.stage_channels) != len(STAGE_NAMES):
            raise ValueError(f"a layout needs 4 stage depths and 4 stage widths, got {self}")
        widths = (self.stem_channels,) + tuple(self.stage_channels)
        for width in widths + (self.head_channels,):
            if width <= 0 or width % CHANNEL_DIVISOR:
                raise ValueError(f"channel width {width} must be a positive multiple of {CHANNEL_DIVISOR}: {self}")
        for c_in, c_out in zip(widths, widths[1:]):
            if c_out <= c_in:
                raise ValueError(
                    f"stage width {c_out} must exceed its input width {c_in} (the stride-2 main branch "
                    f"produces C_out - C_in channels): {self}"
                )


def _is_valid(layout: BackboneLayout) -> bool:
    try:
        layout.check()
    except ValueError:
        return False
    return True


def smallest_width_mult(layout: BackboneLayout) -> float:
    """The smallest width multiplier whose rounded widths still form valid blocks of ``layout``."""
    widths = (layout.stem_channels, layout.head_channels) + tuple(layout.stage_channels)
    # a rounded width changes only where width * w / CHANNEL_DIVISOR crosses k + 0.5
    steps = sorted({CHANNEL_DIVISOR * (k + 0.5) / c for c in widths for k in range(1, c // CHANNEL_DIVISOR + 1)})
    for step, next_step in zip(steps, steps[1:] + [math.inf]):
        for candidate in (step, math.nextafter(step, math.inf)):  # the rounding at a tie may fall either way
            if _is_valid(layout.scaled(candidate)):
                return _shortest_decimal(candidate, next_step)
    return 1.0


def _shortest_decimal(low: float, high: float) -> float:
    """``low`` rounded up to 6 significant digits, if that stays below ``high`` (same widths), else ``low``."""
    scale = 10 ** (5 - math.floor(math.log10(low)))
    value = math.ceil(round(low * scale, 6)) / scale
    return value if value < high else low


def _round_channels(value: float) -> int:
    """Round a channel width to the nearest multiple of CHANNEL_DIVISOR (ties up, at least one multiple)."""
    return max(CHANNEL_DIVISOR, int(math.floor(value / CHANNEL_DIVISOR + 0.5)) * CHANNEL_DIVISOR)


#: the two DetNAS spaces (megvii-model/DetNAS); "small" is also the SPOS space
SPACE_LAYOUTS: Dict[str, BackboneLayout] = {
    "small": BackboneLayout((4, 4, 8, 4), (64, 160, 320, 640), stem_channels=16, head_channels=1024),
    "large": BackboneLayout((8, 8, 16, 8), (96, 240, 480, 960), stem_channels=48, head_channels=1024),
}
#: DetNASNet(3.8): the large space widened; head width 1024 as in the published table
#: (the released checkpoint has 1728: megvii-model/ShuffleNet-Series#1)
WIDENED_LARGE_LAYOUT = BackboneLayout((8, 8, 16, 8), (172, 432, 864, 1728), stem_channels=72, head_channels=1024)


def space_layout(space: str) -> BackboneLayout:
    """The layout of a named space ("small" or "large")."""
    if space not in SPACE_LAYOUTS:
        raise ValueError(f"unknown backbone space {space!r}; expected one of {sorted(SPACE_LAYOUTS)}")
    return SPACE_LAYOUTS[space]


def space_for_length(num_blocks: int) -> str:
    """The space whose encodings have ``num_blocks`` choices."""
    for space, layout in SPACE_LAYOUTS.items():
        if layout.num_blocks == num_blocks:
            return space
    expected = ", ".join(f"{layout.num_blocks} ({space} space)" for space, layout in SPACE_LAYOUTS.items())
    raise ValueError(f"architecture has {num_blocks} choices; expected {expected}")


_ALLOWED_CHOICES = ", ".join(f"{i}={name}" for i, name in enumerate(CHOICE_NAMES))


def validate_encoding(arch: Any, num_blocks: int) -> List[int]:
    """Check a list/tuple encoding of ``num_blocks`` choice ids and return it as a list of ints."""
    if type(arch) not in (list, tuple) and (isinstance(arch, (str, bytes)) or not isinstance(arch, Sequence)):
        raise ValueError(f"an architecture encoding must be a list or tuple of ints, got {type(arch).__name__}")
    if len(arch) != num_blocks:
        raise ValueError(f"architecture has {len(arch)} choices but its space needs exactly {num_blocks}")
    encoding = []
    for position, value in enumerate(arch):
        is_int = type(value) is int or (isinstance(value, numbers.Integral) and not isinstance(value, bool))
        if not is_int:
            raise ValueError(
                f"architecture position {position} has value {value!r} of type {type(value).__name__}; "
                f"expected an int in 0..{NUM_CHOICES - 1} ({_ALLOWED_CHOICES})"
            )
        if not 0 <= value < NUM_CHOICES:
            raise ValueError(
                f"architecture position {position} has value {value}; allowed choices are "
                f"0..{NUM_CHOICES - 1} ({_ALLOWED_CHOICES})"
            )
        encoding.append(int(value))
    return encoding


def format_architecture(encoding: Sequence[int], stage_depths: Sequence[int] | None = None) -> str:
    """Compact string of an encoding, stages separated by '-' (e.g. ``"2120-2112-33130031-3132"``)."""
    if stage_depths is None:
        stage_depths = space_layout(space_for_length(len(encoding))).stage_depths
    parts, start = [], 0
    for depth in stage_depths:
        parts.append("".join(str(v) for v in encoding[start : start + depth]))
        start += depth
    return "-".join(parts)


_SEPARATED_FORM = re.compile(r"[,/\s]")
_TOKEN_SPLIT = re.compile(r"[,/\s]+")
_INT_TOKEN = re.compile(r"-?\d+")


def parse_architecture_string(text: str) -> List[int]:
    """Parse the compact ("2120-2112-...") or separated ("2,1,2,0,...") string form into ints.

    Values are not range-checked here (:func:`validate_encoding` does that, naming the position).
    """
    if _SEPARATED_FORM.search(text):
        tokens = [token for token in _TOKEN_SPLIT.split(text.strip()) if token]
        for index, token in enumerate(tokens):
            if not _INT_TOKEN.fullmatch(token):
                raise ValueError(f"architecture string {text!r}: token {index} ({token!r}) is not an integer")
        return [int(token) for token in tokens]
    values = []
    for index, char in enumerate(text):
        if char == "-":
            continue
        if not char.isdigit():
            raise ValueError(
                f"architecture string {text!r}: character {char!r} at index {index} is neither a digit nor "
                f"'-', and the string is not a registered name (registered: {', '.join(list_architectures())})"
            )
        values.append(int(char))
    return values


@dataclass(frozen=True)
class NamedArchitecture:
    """A registered architecture: its encoding, space and channel layout (width multiplier 1)."""

    name: str
    space: str
    encoding: Tuple[int, ...]
    layout: BackboneLayout
    source: str = ""


@dataclass(frozen=True)
class ResolvedArchitecture:
    """Any accepted architecture form, resolved to an encoding, a space and a full-width layout."""

    encoding: Tuple[int, ...]
    space: str
    layout: BackboneLayout
    name: str | None = field(default=None)

    def __str__(self) -> str:
        compact = format_architecture(self.encoding, self.layout.stage_depths)
        return f"{self.name} ({compact})" if self.name else compact


_REGISTRY: Dict[str, NamedArchitecture] = {}


def register_architecture(
    name: str,
    encoding: Any,
    space: str,
    layout: BackboneLayout | None = None,
    source: str = "",
    overwrite: bool = False,
) -> NamedArchitecture:
    """Register an architecture under ``name`` so configs and tools can refer to it by name.

    ``encoding`` takes any list or string form; ``layout`` defaults to the space's layout and must
    have the space's stage depths.
    """
    if not isinstance(name, str) or not name or _SEPARATED_FORM.search(name) or re.fullmatch(r"[\d-]+", name):
        raise ValueError(f"architecture name {name!r} must be a non-empty string without separators or only digits")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"architecture {name!r} is already registered (pass overwrite=True to replace it)")
    base = space_layout(space)
    layout = base if layout is None else layout
    if layout.stage_depths != base.stage_depths:
        raise ValueError(
            f"layout of {name!r} has stage depths {layout.stage_depths}, but the {space} space has {base.stage_depths}"
        )
    layout.check()
    values = parse_architecture_string(encoding) if isinstance(encoding, str) else encoding
    entry = NamedArchitecture(name, space, tuple(validate_encoding(values, base.num_blocks)), layout, source)
    _REGISTRY[name] = entry
    return entry


def get_architecture(name: str) -> NamedArchitecture:
    """The registered architecture called ``name``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown architecture name {name!r}; registered: {', '.join(list_architectures())}")
    return _REGISTRY[name]


def is_registered_architecture(arch: Any) -> bool:
    """Whether ``arch`` is the name of a registered architecture."""
    return isinstance(arch, str) and arch in _REGISTRY


def list_architectures() -> List[str]:
    """Names of all registered architectures, sorted."""
    return sorted(_REGISTRY)


def parse_architecture(arch: Any, space: str | None = None) -> ResolvedArchitecture:
    """Resolve a list, string or registered name into an encoding, its space and its layout.

    ``space`` (if given) must agree with a registered name's space; for lists and strings it
    fixes the expected length, otherwise the space is inferred from the length (20 or 40).
    """
    if space is not None:
        space_layout(space)
    if is_registered_architecture(arch):
        entry = _REGISTRY[arch]
        if space is not None and space != entry.space:
            raise ValueError(f"architecture {arch!r} belongs to the {entry.space} space, not the {space} space")
        return ResolvedArchitecture(entry.encoding, entry.space, entry.layout, entry.name)
    if isinstance(arch, str):
        if not arch.strip():
            raise ValueError("architecture string is empty; give a list, a compact string or a registered name")
        values: Any = parse_architecture_string(arch)
    else:
        values = arch
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(
            f"an architecture must be a list of ints, a string or a registered name, got {type(arch).__name__}"
        )
    if space is None:
        space = space_for_length(len(values))
    layout = space_layout(space)
    return ResolvedArchitecture(tuple(validate_encoding(values, layout.num_blocks)), space, layout)


class BackboneSearchSpace(SearchSpace):
    """The SearchSpace over DetNAS backbone encodings of one space (DetNAS / SPOS mutation and crossover).

    Args:
        space: "small" (20 blocks) or "large" (40 blocks).
    """

    name = "detnas_backbone"

    def __init__(self, space: str = "small"):
        self.space = space
        self.layout = space_layout(space)

    @property
    def num_blocks(self) -> int:
        """Length of an encoding in this space."""
        return self.layout.num_blocks

    def sample(self, rng):
        """A uniformly random encoding (each choice independent and uniform)."""
        return [rng.randrange(NUM_CHOICES) for _ in range(self.num_blocks)]

    def mutate(self, arch, rng, prob):
        """Redraw each gene uniformly with probability ``prob`` (the redraw may repeat the value)."""
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"mutation probability must be in [0, 1], got {prob!r}")
        return [rng.randrange(NUM_CHOICES) if rng.random() < prob else gene for gene in self.validate(arch)]

    def crossover(self, a, b, rng):
        """Take each gene from ``a`` or ``b`` with probability 0.5."""
        a, b = self.validate(a), self.validate(b)
        return [gene_a if rng.random() < 0.5 else gene_b for gene_a, gene_b in zip(a, b)]

    def validate(self, arch):
        """Canonical list-of-ints form of any accepted architecture form in this space."""
        return list(parse_architecture(arch, space=self.space).encoding)


def _register_published() -> None:
    """Register the encodings published with megvii-model/DetNAS, ShuffleNet-Series and
    SinglePathOneShot under their canonical names."""
    published = [
        ("COCO-FPN-300M", "small", "2120-2112-33130031-3132", None, "DetNAS / ShuffleNet-Series"),
        ("COCO-RetinaNet-300M", "small", "2311-3213-31113320-3333", None, "DetNAS / ShuffleNet-Series"),
        ("VOC-FPN-300M", "small", "2103-1303-20113333-3331", None, "ShuffleNet-Series"),
        ("VOC-RetinaNet-300M", "small", "1300-2333-23333220-2311", None, "ShuffleNet-Series"),
        (
            "DetNASNet",
            "large",
            "00312102-03123320-2113202221310333-13333333",
            None,
            "DetNAS COCO-FPN-1.3G",
        ),
        (
            "DetNASNet-3.8G",
            "large",
            "00312102-03123320-2113202221310333-13333333",
            WIDENED_LARGE_LAYOUT,
            "DetNAS COCO-FPN-3.8G: the 1.3G encoding, widened",
        ),
        ("SPOS", "small", "2101-2020-20230000-3233", None, "SinglePathOneShot official 323M"),
    ]
    for name, space, encoding, layout, source in published:
        register_architecture(name, encoding, space, layout=layout, source=source)


_register_published()
