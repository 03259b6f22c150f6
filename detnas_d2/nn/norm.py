"""Normalisation layers for the DetNAS backbones, selected by name (pure PyTorch).

"BN" = nn.BatchNorm2d, "SyncBN" = nn.SyncBatchNorm (cross-GPU statistics under DDP, plain BN in a
single process), "GN" = nn.GroupNorm with gcd(32, C) groups, "FrozenBN" = fixed affine transform
from stored statistics (fixed-architecture networks only: a supernet must keep BN statistics
trainable for per-candidate recalibration).
"""
import functools
import math
from typing import Callable

import torch
from torch import nn

NORM_TYPES = ("BN", "SyncBN", "GN", "FrozenBN")
#: maximum number of GroupNorm groups (reduced to a divisor of the channel count)
GN_MAX_GROUPS = 32


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters, stored as buffers.

    Its state-dict keys are those of nn.BatchNorm2d (``num_batches_tracked`` is ignored), so BN
    checkpoints load directly.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``weight * (x - mean) / sqrt(var + eps) + bias`` per channel."""
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


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
