"""Normalisation layers for the DetNAS backbones, selected by name (pure PyTorch and torchvision).

"BN" = nn.BatchNorm2d, "SyncBN" = nn.SyncBatchNorm (cross-GPU statistics under DDP, plain BN in a
single process), "GN" = nn.GroupNorm with gcd(32, C) groups, "FrozenBN" = torchvision's
FrozenBatchNorm2d, a fixed affine transform from stored statistics (fixed-architecture networks only:
a supernet must keep BN statistics trainable for per-candidate recalibration). FrozenBatchNorm2d keeps
nn.BatchNorm2d's state-dict keys as buffers and drops ``num_batches_tracked`` on load, so BN
checkpoints load directly.
"""

import functools
import math
from typing import Callable

from torch import nn
from torchvision.ops import FrozenBatchNorm2d

NORM_TYPES = ("BN", "SyncBN", "GN", "FrozenBN")
#: maximum number of GroupNorm groups (reduced to a divisor of the channel count)
GN_MAX_GROUPS = 32


def norm_factory(
    norm: str, *, affine: bool = True, momentum: float = 0.1, allow_frozen: bool = True
) -> Callable[[int], nn.Module]:
    """Return ``make(channels) -> nn.Module`` for the named normalisation.

    ``momentum`` uses the PyTorch convention (weight of the new batch statistics); ``affine=False``
    gives the SPOS supernet's parameter-free BN. ``allow_frozen=False`` rejects "FrozenBN".
    """
    if norm not in NORM_TYPES:
        raise ValueError(f"unknown norm {norm!r}; expected one of {', '.join(NORM_TYPES)}")
    if norm == "FrozenBN" and not allow_frozen:
        raise ValueError(
            "norm 'FrozenBN' is only allowed for fixed-architecture networks; a supernet needs trainable BN "
            "statistics (use 'BN' or 'SyncBN')"
        )
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"BN momentum must be in [0, 1], got {momentum!r}")
    if norm == "BN":
        return functools.partial(nn.BatchNorm2d, affine=affine, momentum=momentum)
    if norm == "SyncBN":
        return functools.partial(nn.SyncBatchNorm, affine=affine, momentum=momentum)
    if norm == "GN":
        return lambda channels: nn.GroupNorm(math.gcd(GN_MAX_GROUPS, channels), channels, affine=affine)
    return FrozenBatchNorm2d
