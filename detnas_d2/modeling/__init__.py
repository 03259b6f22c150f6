"""detectron2 glue: DetNAS backbones, the NECK registry and NAS-FPN backbones, the supernet classifier."""

from . import classifier, detnas_backbone, neck  # noqa: F401  (register BACKBONE builders, NECKs, META_ARCH)
from .checkpoint import DetNASCheckpointer  # noqa: F401
from .classifier import SupernetClassifier  # noqa: F401
from .detnas_backbone import DetNASBackbone, find_detnas_backbone  # noqa: F401
from .neck import NECK_REGISTRY, build_nasfpn_backbone  # noqa: F401
