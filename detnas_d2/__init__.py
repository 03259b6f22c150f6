"""detnas_d2: search detection systems on detectron2.

Importing the package registers everything it provides: datasets, backbones, necks, mappers, meta-architectures.
"""
from . import data  # noqa: F401  (registers datasets)
from .config import add_detnas_config  # noqa: F401

__version__ = "0.1.0"
