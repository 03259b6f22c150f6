"""Bbox-aware AutoAugment for detection (Zoph et al. 2019): ops, published policies, the Augmentation, search space."""

from .augmentation import AutoAugment
from .ops import OPS, build_op, nonempty_boxes
from .policies import POLICIES, resolve_policy, validate_policy
from .space import AutoAugmentPolicySpace

__all__ = [
    "AutoAugment",
    "AutoAugmentPolicySpace",
    "OPS",
    "POLICIES",
    "build_op",
    "nonempty_boxes",
    "resolve_policy",
    "validate_policy",
]
