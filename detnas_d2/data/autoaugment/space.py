"""Search space of detection AutoAugment policies (Zoph et al., ECCV 2020): K sub-policies x N ops x (type, prob,
level).

An architecture is JSON: ``[[[op_name, probability, level], ...N], ...K]``. Each of the K*N*3 decisions is a
gene (the 30 controller decisions of the paper for K=5, N=2). Sub-policies are unordered (one is drawn
uniformly per image), so the canonical form sorts them; ops inside a sub-policy keep their order.
"""

import random
from typing import Any, List, Sequence

from ...space.base import SearchSpace
from .ops import OPS, check_level, check_probability

#: the 22 op types of the paper's search space (the paper counts 22; which 22 of the 25 is inferred)
SEARCH_OPS = (
    "Equalize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "Cutout",
    "Rotate_BBox",
    "TranslateX_BBox",
    "TranslateY_BBox",
    "ShearX_BBox",
    "ShearY_BBox",
    "Rotate_Only_BBoxes",
    "ShearX_Only_BBoxes",
    "ShearY_Only_BBoxes",
    "TranslateX_Only_BBoxes",
    "TranslateY_Only_BBoxes",
    "Flip_Only_BBoxes",
    "Solarize_Only_BBoxes",
    "Equalize_Only_BBoxes",
    "Cutout_Only_BBoxes",
)
PROBABILITY_CHOICES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # 6 uniform probability bins
LEVEL_CHOICES = (0, 2, 4, 6, 8, 10)  # 6 uniform magnitude bins
_PROBABILITY_TOLERANCE = 1e-9


def _is_list(value) -> bool:
    return isinstance(value, (list, tuple))


class AutoAugmentPolicySpace(SearchSpace):
    """Policies of ``num_sub_policies`` sub-policies with ``ops_per_sub_policy`` ops each.

    Args:
        num_sub_policies: sub-policies per policy (the paper's K = 5).
        ops_per_sub_policy: ops per sub-policy (the paper's N = 2).
        op_names: op types a gene may take (default the paper's 22).
        probabilities: allowed op probabilities (default 6 uniform values).
        levels: allowed magnitudes in 0..10 (default 6 uniform values).
    """

    name = "autoaugment_policy"

    def __init__(
        self,
        num_sub_policies: int = 5,
        ops_per_sub_policy: int = 2,
        op_names: Sequence[str] = SEARCH_OPS,
        probabilities: Sequence[float] = PROBABILITY_CHOICES,
        levels: Sequence[int] = LEVEL_CHOICES,
    ):
        for key, value in (("num_sub_policies", num_sub_policies), ("ops_per_sub_policy", ops_per_sub_policy)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        unknown = [name for name in op_names if name not in OPS]
        if not op_names or unknown or len(set(op_names)) != len(op_names):
            raise ValueError(f"op_names must be distinct AutoAugment ops from {', '.join(OPS)}; got {list(op_names)!r}")
        if not probabilities or not levels:
            raise ValueError("probabilities and levels must be non-empty")
        self.num_sub_policies = num_sub_policies
        self.ops_per_sub_policy = ops_per_sub_policy
        # gene field -> allowed values: 0 op type, 1 probability, 2 level
        self.choices = (
            tuple(op_names),
            tuple(sorted({check_probability(p) for p in probabilities})),
            tuple(sorted({check_level(level) for level in levels})),
        )

    def _draw(self, field: int, rng: random.Random):
        return rng.choice(self.choices[field])

    def sample(self, rng: random.Random) -> List:
        arch = [
            [[self._draw(field, rng) for field in range(3)] for _ in range(self.ops_per_sub_policy)]
            for _ in range(self.num_sub_policies)
        ]
        return self.validate(arch)

    def mutate(self, arch: Any, rng: random.Random, prob: float) -> List:
        check_probability(prob)
        child = [
            [
                [self._draw(field, rng) if rng.random() < prob else gene for field, gene in enumerate(entry)]
                for entry in sub
            ]
            for sub in self.validate(arch)
        ]
        return self.validate(child)

    def crossover(self, a: Any, b: Any, rng: random.Random) -> List:
        child = [
            [
                [gene_a if rng.random() < 0.5 else gene_b for gene_a, gene_b in zip(entry_a, entry_b)]
                for entry_a, entry_b in zip(sub_a, sub_b)
            ]
            for sub_a, sub_b in zip(self.validate(a), self.validate(b))
        ]
        return self.validate(child)

    def validate(self, arch: Any) -> List:
        """Canonical form: probabilities snapped to their bin, sub-policies sorted; ValueError otherwise."""
        if not _is_list(arch) or len(arch) != self.num_sub_policies:
            raise ValueError(
                f"a policy architecture must be a list of {self.num_sub_policies} sub-policies, got {arch!r}"
            )
        canonical = []
        for i, sub in enumerate(arch):
            if not _is_list(sub) or len(sub) != self.ops_per_sub_policy:
                raise ValueError(
                    f"sub-policy {i} must be a list of {self.ops_per_sub_policy} [op, probability, level] entries, "
                    f"got {sub!r}"
                )
            canonical.append([self._validate_entry(entry, f"sub-policy {i}, op {j}") for j, entry in enumerate(sub)])
        return sorted(canonical)

    def _validate_entry(self, entry: Any, where: str) -> List:
        if not _is_list(entry) or len(entry) != 3:
            raise ValueError(f"{where}: expected [op, probability, level], got {entry!r}")
        op_name, prob, level = entry
        op_choices, prob_choices, level_choices = self.choices
        if op_name not in op_choices:
            raise ValueError(f"{where}: op {op_name!r} is not in this space; choices: {', '.join(op_choices)}")
        numeric = isinstance(prob, (int, float)) and not isinstance(prob, bool)
        matches = [choice for choice in prob_choices if numeric and abs(prob - choice) <= _PROBABILITY_TOLERANCE]
        if not matches:
            raise ValueError(f"{where}: probability {prob!r} is not one of {list(prob_choices)}")
        if isinstance(level, bool) or level not in level_choices or not isinstance(level, int):
            raise ValueError(f"{where}: level {level!r} is not one of {list(level_choices)}")
        return [op_name, matches[0], level]

    def to_policy(self, arch: Any) -> List[List[tuple]]:
        """The architecture as an ``AutoAugment`` policy: list of sub-policies of (op, prob, level) tuples."""
        return [[tuple(entry) for entry in sub] for sub in self.validate(arch)]
