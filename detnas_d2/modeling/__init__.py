"""detectron2 glue: DetNAS backbones, the NECK registry and NAS-FPN backbones, the supernet classifier."""
from . import classifier, detnas_backbone, neck  # noqa: F401  (register BACKBONE builders, NECKs, META_ARCH)
from .checkpoint import DetNASCheckpointer  # noqa: F401
from .classifier import SupernetClassifier, add_classifier_config  # noqa: F401
from .detnas_backbone import DetNASBackbone, add_detnas_backbone_config, find_detnas_backbone  # noqa: F401
from .neck import NECK_REGISTRY, add_nasfpn_config, build_nasfpn_backbone  # noqa: F401
