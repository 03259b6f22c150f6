"""NAS-FPN neck architectures as data: cell encoding, validation, a registry of named necks, and the neck search space.

A neck architecture is a list of merging cells ``[input1, input2, level, op]`` (canonical JSON form, e.g.
``[1, 3, 4, "attention"]``): two distinct indices into the growing node pool (0..4 = block inputs P3..P7, then 5, 6, ...
= the outputs of earlier cells), the output level 3..7 and the binary op ``"sum"`` or ``"attention"`` (ints 0 / 1
are accepted too). The last 5 cells are the output cells and produce P3..P7 exactly once each; intermediate cells may
not output P3. Cell positions in error messages are 0-based. Pure Python: no torch, no detectron2.
"""

import json
import numbers
import random
from typing import Any, Dict, List, Sequence, Union

from .base import SearchSpace

#: pyramid levels of the block inputs and outputs (P3..P7, strides 8..128)
LEVELS = (3, 4, 5, 6, 7)
#: number of block inputs in the initial pool (one per level)
NUM_INPUTS = len(LEVELS)
#: the last NUM_OUTPUT_CELLS cells of a block are its output cells, one per level
NUM_OUTPUT_CELLS = len(LEVELS)
#: levels an intermediate (non-output) cell may produce; P3 is excluded to save compute (paper)
INTERMEDIATE_LEVELS = (4, 5, 6, 7)
#: binary ops; an int op is the index into this tuple (0 = sum, 1 = attention)
OPS = ("sum", "attention")

Cell = List[Any]  # [input1: int, input2: int, level: int, op: str]
NeckArchSpec = Union[str, Sequence[Sequence[Any]]]

_NAMED_ARCHS: Dict[str, List[Cell]] = {}


def _is_int(value) -> bool:
    """True for Python / numpy integers, False for bools (which would silently pass as 0 / 1)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _canonical_op(index: int, op) -> str:
    """Map an op given as name or int to its canonical name, or raise ValueError naming the cell."""
    if isinstance(op, str) and op in OPS:
        return op
    if _is_int(op) and 0 <= op < len(OPS):
        return OPS[int(op)]
    raise ValueError(f"neck cell {index}: unknown op {op!r}; allowed: 'sum', 'attention' or 0 (sum) / 1 (attention)")


def _canonical_cell(index: int, cell, num_cells: int) -> Cell:
    """Check one cell's shape, input indices, level and op; return it as ``[in1, in2, level, op]``."""
    if not isinstance(cell, (list, tuple)) or len(cell) != 4:
        length = f"{len(cell)} entries" if isinstance(cell, (list, tuple)) else f"a {type(cell).__name__}"
        raise ValueError(f"neck cell {index}: expected [input1, input2, level, op] (4 entries), got {length}: {cell!r}")
    input1, input2, level, op = cell
    pool_size = NUM_INPUTS + index
    for name, node in (("input1", input1), ("input2", input2)):
        if not _is_int(node):
            raise ValueError(f"neck cell {index}: {name} must be an int pool index, got {node!r}")
        if not 0 <= node < pool_size:
            raise ValueError(
                f"neck cell {index}: {name} = {node} is out of range; this cell may read pool nodes "
                f"0..{pool_size - 1} (0-4 = inputs P3-P7, then one node per earlier cell)"
            )
    if input1 == input2:
        raise ValueError(f"neck cell {index}: both inputs are node {input1}; the two inputs must differ")
    if not _is_int(level) or level not in LEVELS:
        raise ValueError(f"neck cell {index}: level {level!r} is invalid; allowed levels are ints 3..7")
    is_output = index >= num_cells - NUM_OUTPUT_CELLS
    if not is_output and level not in INTERMEDIATE_LEVELS:
        raise ValueError(
            f"neck cell {index}: intermediate cell at forbidden level P{level}; "
            f"intermediate cells may output levels {list(INTERMEDIATE_LEVELS)} only"
        )
    return [int(input1), int(input2), int(level), _canonical_op(index, op)]


def validate_neck_arch(arch: Sequence[Sequence[Any]], num_cells: int = None) -> List[Cell]:
    """Validate an inline cell list and return its canonical form; raise ValueError naming the cell and the problem."""
    if isinstance(arch, (str, bytes)) or not isinstance(arch, Sequence):
        raise ValueError(f"a neck architecture must be a list of cells, got {type(arch).__name__}")
    if num_cells is not None and len(arch) != num_cells:
        raise ValueError(f"neck architecture has {len(arch)} cells, expected {num_cells}")
    if len(arch) < NUM_OUTPUT_CELLS:
        raise ValueError(
            f"neck architecture has {len(arch)} cells; at least {NUM_OUTPUT_CELLS} are needed "
            f"(the last {NUM_OUTPUT_CELLS} cells are the P3-P7 output cells)"
        )
    cells = [_canonical_cell(index, cell, len(arch)) for index, cell in enumerate(arch)]
    producer_of_level = {}
    for index in range(len(cells) - NUM_OUTPUT_CELLS, len(cells)):
        level = cells[index][2]
        if level in producer_of_level:
            raise ValueError(
                f"neck cell {index}: output level P{level} is already produced by output cell "
                f"{producer_of_level[level]}; the last {NUM_OUTPUT_CELLS} cells must cover P3-P7 exactly once"
            )
        producer_of_level[level] = index
    return cells


def parse_compact_neck_arch(text: str) -> List[Cell]:
    """Parse the 4-int compact form of the first TF release, ``"3,1,1,3 | 3,0,1,5 | ..."``.

    Each cell is ``level index from the top (0 = P7 ... 4 = P3), op (0 sum, 1 attention), input1, input2``.
    """
    arch = []
    for index, chunk in enumerate(text.split("|")):
        fields = [field.strip() for field in chunk.split(",")]
        if len(fields) != 4 or not all(field.lstrip("-").isdigit() for field in fields):
            raise ValueError(
                f"neck cell {index}: compact form needs 4 comma-separated ints "
                f"'level_from_top,op,input1,input2', got {chunk.strip()!r}"
            )
        level_from_top, op, input1, input2 = (int(field) for field in fields)
        if not 0 <= level_from_top < len(LEVELS):
            raise ValueError(f"neck cell {index}: compact level index {level_from_top} not in 0..4 (0 = P7, 4 = P3)")
        arch.append([input1, input2, LEVELS[-1] - level_from_top, op])
    return validate_neck_arch(arch)


def register_neck_arch(name: str, arch: NeckArchSpec) -> List[Cell]:
    """Register ``arch`` under ``name`` so configs can refer to it; re-registering the same cells is a no-op."""
    cells = resolve_neck_arch(arch)
    if name in _NAMED_ARCHS and _NAMED_ARCHS[name] != cells:
        raise ValueError(f"neck architecture {name!r} is already registered with different cells")
    _NAMED_ARCHS[name] = cells
    return [list(cell) for cell in cells]


def registered_neck_archs() -> List[str]:
    """Names accepted by :func:`resolve_neck_arch`."""
    return sorted(_NAMED_ARCHS)


def resolve_neck_arch(spec: NeckArchSpec, num_cells: int = None) -> List[Cell]:
    """Canonical cell list from a registered name, a JSON cell list, the compact string form or an inline list."""
    if isinstance(spec, str):
        text = spec.strip()
        if text in _NAMED_ARCHS:
            cells = [list(cell) for cell in _NAMED_ARCHS[text]]
        elif text.startswith("["):
            try:
                cells = json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"neck architecture {spec!r} is not valid JSON: {error}") from None
        elif "," in text:
            cells = parse_compact_neck_arch(text)
        else:
            raise ValueError(
                f"unknown neck architecture name {spec!r}; registered: {registered_neck_archs()} "
                "(or give a cell list, a JSON cell list or the compact 'l,op,in1,in2 | ...' form)"
            )
        return validate_neck_arch(cells, num_cells)
    return validate_neck_arch(spec, num_cells)


#: the published NAS-FPN block (Ghiasi et al., CVPR 2019, Fig. 7f), identical in all reference ports
NASFPN_ARCH = register_neck_arch(
    "NAS-FPN",
    [
        [1, 3, 4, "attention"],  # node 5: P4 from P4in, P6in
        [1, 5, 4, "sum"],  # node 6: P4 from P4in, node 5
        [0, 6, 3, "sum"],  # node 7: P3 output
        [6, 7, 4, "sum"],  # node 8: P4 output
        [7, 8, 5, "attention"],  # node 9: P5 output (+ unused P5in)
        [6, 9, 7, "attention"],  # node 10: P7 output (+ unused P7in)
        [9, 10, 6, "attention"],  # node 11: P6 output
    ],
)


class NeckSearchSpace(SearchSpace):
    """NAS-FPN block architectures with a fixed number of cells; every sampled / mutated / crossed arch is valid.

    Args:
        num_cells: cells per block, the last 5 being the output cells (default 7, as the published block).
    """

    name = "nasfpn_neck"

    def __init__(self, num_cells: int = len(NASFPN_ARCH)):
        if not _is_int(num_cells) or num_cells < NUM_OUTPUT_CELLS:
            raise ValueError(f"num_cells must be an int >= {NUM_OUTPUT_CELLS} (the output cells), got {num_cells!r}")
        self.num_cells = int(num_cells)
        self.first_output_cell = self.num_cells - NUM_OUTPUT_CELLS

    def _draw_input(self, index: int, other: int, rng: random.Random) -> int:
        """Uniform pool index for cell ``index`` that differs from ``other`` (the cell's other input)."""
        return rng.choice([node for node in range(NUM_INPUTS + index) if node != other])

    def sample(self, rng: random.Random) -> List[Cell]:
        """Uniform inputs and ops; intermediate levels uniform over P4-P7; output levels a random permutation."""
        output_levels = list(LEVELS)
        rng.shuffle(output_levels)
        arch = []
        for index in range(self.num_cells):
            input1, input2 = rng.sample(range(NUM_INPUTS + index), 2)
            if index < self.first_output_cell:
                level = rng.choice(INTERMEDIATE_LEVELS)
            else:
                level = output_levels[index - self.first_output_cell]
            arch.append([input1, input2, level, rng.choice(OPS)])
        return arch

    def mutate(self, arch: Any, rng: random.Random, prob: float) -> List[Cell]:
        """Redraw each gene with probability ``prob``; a redrawn output level swaps with the output cell holding it."""
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"mutation probability must be in [0, 1], got {prob!r}")
        child = self.validate(arch)
        for index, cell in enumerate(child):
            if rng.random() < prob:
                cell[0] = self._draw_input(index, cell[1], rng)
            if rng.random() < prob:
                cell[1] = self._draw_input(index, cell[0], rng)
            if rng.random() < prob:
                if index < self.first_output_cell:
                    cell[2] = rng.choice(INTERMEDIATE_LEVELS)
                else:
                    new_level = rng.choice(LEVELS)
                    holder = next(c for c in child[self.first_output_cell :] if c[2] == new_level)
                    holder[2], cell[2] = cell[2], new_level
            if rng.random() < prob:
                cell[3] = rng.choice(OPS)
        return self.validate(child)

    def crossover(self, a: Any, b: Any, rng: random.Random) -> List[Cell]:
        """Take each cell from ``a`` or ``b``; duplicated output levels are repaired with the missing ones at random."""
        parent_a, parent_b = self.validate(a), self.validate(b)
        child = [list(rng.choice((cell_a, cell_b))) for cell_a, cell_b in zip(parent_a, parent_b)]
        seen, duplicates = set(), []
        for cell in child[self.first_output_cell :]:
            if cell[2] in seen:
                duplicates.append(cell)
            seen.add(cell[2])
        missing = [level for level in LEVELS if level not in seen]
        rng.shuffle(missing)
        for cell, level in zip(duplicates, missing):
            cell[2] = level
        return self.validate(child)

    def validate(self, arch: Any) -> List[Cell]:
        """Canonical cell list with exactly ``num_cells`` cells (names and string forms are resolved)."""
        return resolve_neck_arch(arch, num_cells=self.num_cells)


def format_compact_neck_arch(arch: NeckArchSpec) -> str:
    """The compact 4-int form of ``arch`` (inverse of :func:`parse_compact_neck_arch`). Config-safe: yacs keeps it a
    string, whereas it decodes a JSON cell list into a list."""
    return " | ".join(
        f"{LEVELS[-1] - level},{OPS.index(op)},{in1},{in2}" for in1, in2, level, op in resolve_neck_arch(arch)
    )
