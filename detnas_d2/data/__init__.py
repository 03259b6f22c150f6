"""Datasets (embedded shapes, COCO search split), AutoAugment, and dataset mappers."""
from . import datasets  # noqa: F401  (registers shapes_* and, where present, the COCO search split)
from . import classification  # noqa: F401  (registers ClassificationMapper and, where present, ImageNet)
from .autoaugment import AutoAugment, AutoAugmentPolicySpace  # noqa: F401
from .mappers import MAPPER_REGISTRY, add_autoaugment_config, build_test_mapper, build_train_mapper  # noqa: F401
from .shapes import SHAPE_CLASSES, ShapesSpec, ensure_shapes  # noqa: F401
