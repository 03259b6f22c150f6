"""Evaluators for the plugin's tasks beyond detectron2's own (classification accuracy for supernet pretraining)."""

from .classification import ClassificationEvaluator  # noqa: F401
