"""Datasets (embedded shapes, COCO search split), AutoAugment, and dataset mappers."""
from . import datasets  # noqa: F401  (registers shapes_* and, where present, the COCO search split)
from .shapes import SHAPE_CLASSES, ShapesSpec, ensure_shapes  # noqa: F401
