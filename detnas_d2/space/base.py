"""The search-space protocol shared by every searchable part (backbone, neck, augmentation policy).

A search space is plain Python: architectures are JSON-serialisable values (lists of ints, lists of
lists, ...). The search engine only talks to this interface, so a new space plugs into the same
evolutionary / random strategies, memo and state files.
"""

import json
import random
from typing import Any, Hashable


class SearchSpace:
    """Base class of all search spaces.

    Every method takes an explicit ``random.Random`` so that the caller owns (and can checkpoint)
    the random state; spaces never touch the global RNG.
    """

    #: short name used in logs and exported files, e.g. ``"detnas_backbone"``
    name = "space"

    def sample(self, rng: random.Random) -> Any:
        """Draw one architecture uniformly at random."""
        raise NotImplementedError

    def mutate(self, arch: Any, rng: random.Random, prob: float) -> Any:
        """Return a child of ``arch`` where each gene is redrawn uniformly with probability ``prob``."""
        raise NotImplementedError

    def crossover(self, a: Any, b: Any, rng: random.Random) -> Any:
        """Return a child taking each gene from ``a`` or ``b`` with probability 0.5."""
        raise NotImplementedError

    def validate(self, arch: Any) -> Any:
        """Return the canonical form of ``arch`` or raise ``ValueError`` naming the problem."""
        raise NotImplementedError

    def encode(self, arch: Any) -> Hashable:
        """A hashable, stable key for ``arch`` (used by the memo and the logs)."""
        return json.dumps(self.validate(arch), separators=(",", ":"))

    def decode(self, key: Hashable) -> Any:
        """Inverse of :meth:`encode`."""
        return self.validate(json.loads(key))
