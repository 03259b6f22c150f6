"""Search spaces as sequences of categorical decisions ("tokens"), for the RL controller (``controller.py``).

A :class:`Tokenizer` gives the number of choices of every token, the choices allowed after a prefix of earlier
decisions (the masks that keep every sampled architecture valid, e.g. NAS-FPN output cells covering P3-P7 exactly
once), and the maps between token lists and architectures. ``tokenizer_for(space)`` finds the tokenizer of any
registered space; ``register_tokenizer`` adds one for a new space class. Pure Python.
"""

from typing import Any, Callable, Dict, List, Sequence

from ..data.autoaugment.space import AutoAugmentPolicySpace
from ..space.backbone import NUM_CHOICES, BackboneSearchSpace
from ..space.base import SearchSpace
from ..space.joint import JointSpace
from ..space.neck import INTERMEDIATE_LEVELS, LEVELS, NUM_INPUTS, OPS, NeckSearchSpace


class Tokenizer:
    """Decisions of one space: ``sizes[t]`` choices for token ``t``; masks, decoding and encoding."""

    def __init__(self, sizes: Sequence[int]):
        if not sizes or any(size < 1 for size in sizes):
            raise ValueError(f"a tokenizer needs at least one token with >= 1 choice each, got sizes {list(sizes)}")
        self.sizes = list(sizes)

    def allowed(self, prefix: Sequence[int]) -> List[bool]:
        """Which choices of token ``len(prefix)`` keep the architecture valid after the decisions ``prefix``."""
        return [True] * self.sizes[len(prefix)]

    def to_arch(self, tokens: Sequence[int]) -> Any:
        """The architecture of a full token list."""
        raise NotImplementedError

    def from_arch(self, arch: Any) -> List[int]:
        """A token list whose :meth:`to_arch` is ``arch``."""
        raise NotImplementedError


class CategoricalTokenizer(Tokenizer):
    """Independent genes: the architecture is the list of tokens itself (backbone encodings, toy spaces)."""

    def to_arch(self, tokens):
        return [int(token) for token in tokens]

    def from_arch(self, arch):
        return [int(gene) for gene in arch]


class NeckTokenizer(Tokenizer):
    """NAS-FPN cells as 4 tokens each: input1, input2 (!= input1), level index into LEVELS, op index into OPS."""

    def __init__(self, num_cells: int):
        self.num_cells = num_cells
        self.first_output_cell = num_cells - len(LEVELS)
        sizes = []
        for index in range(num_cells):
            sizes += [NUM_INPUTS + index, NUM_INPUTS + index, len(LEVELS), len(OPS)]
        super().__init__(sizes)

    def allowed(self, prefix):
        index, field = divmod(len(prefix), 4)
        if field == 1:  # the second input must differ from the first
            return [node != prefix[-1] for node in range(self.sizes[len(prefix)])]
        if field == 2:
            return self._allowed_levels(prefix, index)
        return super().allowed(prefix)

    def _allowed_levels(self, prefix, index):
        """Intermediate cells: P4-P7; output cells: the levels no earlier output cell produces."""
        if index < self.first_output_cell:
            return [level in INTERMEDIATE_LEVELS for level in LEVELS]
        used = {prefix[4 * cell + 2] for cell in range(self.first_output_cell, index)}
        return [choice not in used for choice in range(len(LEVELS))]

    def to_arch(self, tokens):
        return [
            [int(tokens[i]), int(tokens[i + 1]), LEVELS[tokens[i + 2]], OPS[tokens[i + 3]]]
            for i in range(0, len(tokens), 4)
        ]

    def from_arch(self, arch):
        return [value for in1, in2, level, op in arch for value in (in1, in2, LEVELS.index(level), OPS.index(op))]


class PolicyTokenizer(Tokenizer):
    """AutoAugment policies: (op, probability, level) indices into the space's choices, entry by entry."""

    def __init__(self, space: AutoAugmentPolicySpace):
        self.choices = space.choices
        self.entries = space.num_sub_policies * space.ops_per_sub_policy
        self.ops_per_sub_policy = space.ops_per_sub_policy
        super().__init__([len(values) for values in self.choices] * self.entries)

    def to_arch(self, tokens):
        entries = [[self.choices[field][tokens[3 * e + field]] for field in range(3)] for e in range(self.entries)]
        n = self.ops_per_sub_policy
        return [entries[i : i + n] for i in range(0, len(entries), n)]

    def from_arch(self, arch):
        return [self.choices[field].index(value) for sub in arch for entry in sub for field, value in enumerate(entry)]


class JointTokenizer(Tokenizer):
    """The parts' tokens one after the other, in the joint space's (sorted) part order."""

    def __init__(self, space: JointSpace):
        self.parts = {name: tokenizer_for(part) for name, part in space.parts.items()}
        self.starts, start = {}, 0
        for name, tokenizer in self.parts.items():
            self.starts[name] = start
            start += len(tokenizer.sizes)
        super().__init__([size for tokenizer in self.parts.values() for size in tokenizer.sizes])

    def _part_at(self, position: int):
        """``(name, tokenizer, start)`` of the part holding token ``position``."""
        for name, tokenizer in self.parts.items():
            start = self.starts[name]
            if position < start + len(tokenizer.sizes):
                return name, tokenizer, start
        raise IndexError(f"token {position} is past the last token ({len(self.sizes) - 1})")

    def allowed(self, prefix):
        _, tokenizer, start = self._part_at(len(prefix))
        return tokenizer.allowed(prefix[start:])

    def to_arch(self, tokens):
        return {
            name: tokenizer.to_arch(tokens[self.starts[name] : self.starts[name] + len(tokenizer.sizes)])
            for name, tokenizer in self.parts.items()
        }

    def from_arch(self, arch):
        return [token for name, tokenizer in self.parts.items() for token in tokenizer.from_arch(arch[name])]


_TOKENIZERS: Dict[type, Callable[[Any], Tokenizer]] = {
    BackboneSearchSpace: lambda space: CategoricalTokenizer([NUM_CHOICES] * space.num_blocks),
    NeckSearchSpace: lambda space: NeckTokenizer(space.num_cells),
    AutoAugmentPolicySpace: PolicyTokenizer,
    JointSpace: JointTokenizer,
}


def register_tokenizer(space_class: type, factory: Callable[[Any], Tokenizer]) -> None:
    """Make ``SEARCH.STRATEGY "controller"`` able to search spaces of ``space_class`` (``factory(space)``)."""
    _TOKENIZERS[space_class] = factory


def tokenizer_for(space: SearchSpace) -> Tokenizer:
    """The tokenizer of ``space`` (its class or the nearest registered base class)."""
    for cls in type(space).__mro__:
        if cls in _TOKENIZERS:
            return _TOKENIZERS[cls](space)
    known = sorted(cls.__name__ for cls in _TOKENIZERS)
    raise ValueError(
        f"SEARCH.STRATEGY 'controller' cannot search space {space.name!r} ({type(space).__name__}): "
        f"no tokenizer is registered for it; registered: {known} (see register_tokenizer)"
    )
