"""Training machinery: the trainer, path-sampling hooks, BN recalibration."""

from .trainer import Trainer  # noqa: F401
