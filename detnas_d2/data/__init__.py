"""Datasets (embedded shapes, COCO search split), AutoAugment, and dataset mappers."""

from . import classification  # noqa: F401  (registers ClassificationMapper)
from .autoaugment import AutoAugment, AutoAugmentPolicySpace  # noqa: F401
from .mappers import MAPPER_REGISTRY, build_test_mapper, build_train_mapper  # noqa: F401
from .shapes import SHAPE_CLASSES, ShapesSpec, ensure_shapes  # noqa: F401
