"""Seeded draws of a subset (the proxy task's training images, a dataset's held-out search split)."""

import random
from typing import List


def seeded_subset_indices(num_items: int, size: int, seed: int) -> List[int]:
    """Sorted indices of ``size`` of ``num_items`` items drawn without replacement by ``random.Random(seed)``.

    The draw depends only on the three numbers, so every rank and every rerun picks the same items.
    """
    return sorted(random.Random(seed).sample(range(num_items), size))
