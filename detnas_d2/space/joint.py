"""A search space made of named sub-spaces (e.g. backbone + neck), searched together.

An architecture is a dict ``{part name: part architecture}``; every operator acts part by part.
"""

from typing import Dict

from .base import SearchSpace


class JointSpace(SearchSpace):
    """The product of named search spaces; used when a model has several one-shot parts.

    Args:
        parts: the sub-spaces by part name (e.g. ``{"backbone": ..., "neck": ...}``).
    """

    name = "joint"

    def __init__(self, parts: Dict[str, SearchSpace]):
        if not parts:
            raise ValueError("JointSpace needs at least one part")
        self.parts = dict(sorted(parts.items()))
        self.name = "joint(" + ",".join(f"{k}:{v.name}" for k, v in self.parts.items()) + ")"

    def sample(self, rng):
        return {name: space.sample(rng) for name, space in self.parts.items()}

    def mutate(self, arch, rng, prob):
        return {name: space.mutate(arch[name], rng, prob) for name, space in self.parts.items()}

    def crossover(self, a, b, rng):
        return {name: space.crossover(a[name], b[name], rng) for name, space in self.parts.items()}

    def validate(self, arch):
        if not isinstance(arch, dict) or set(arch) != set(self.parts):
            got = sorted(arch) if isinstance(arch, dict) else type(arch).__name__
            raise ValueError(f"a joint architecture must be a dict with keys {sorted(self.parts)}, got {got}")
        return {name: space.validate(arch[name]) for name, space in self.parts.items()}
