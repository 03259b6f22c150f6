"""``add_detnas_config(cfg)``: declares every config key the package adds, with defaults.

Each area declares its own keys in an ``add_*_config`` function next to its code; this module composes them.
Calling it twice on the same config is harmless.
"""
from detectron2.config import CfgNode as CN


def declare(node: CN, key: str, value) -> None:
    """Set ``node.key = value`` unless the key exists already, so ``add_*_config`` functions stay idempotent."""
    if key not in node:
        node[key] = value


def _add_dataset_config(cfg):
    if "SHAPES" in cfg.DATASETS:
        return
    cfg.DATASETS.SHAPES = CN()
    cfg.DATASETS.SHAPES.NUM_TRAIN = 600  # images in shapes_train (supernet training split)
    cfg.DATASETS.SHAPES.NUM_SEARCH = 150  # images in shapes_search (held out from train; search fitness set)
    cfg.DATASETS.SHAPES.NUM_VAL = 150  # images in shapes_val (final evaluation)
    cfg.DATASETS.SHAPES.IMAGE_SIZE = 128  # side of the square generated images, pixels
    cfg.DATASETS.SHAPES.SEED = 0  # generator seed; the same seed gives byte-identical files


def add_detnas_config(cfg):
    """Declare all detnas_d2 config keys on a detectron2 ``CfgNode`` (idempotent)."""
    from .data.mappers import add_autoaugment_config
    from .data.registration import add_registration_config
    from .engine.learning_alarm import add_train_alarm_config
    from .engine.path_sampling import add_supernet_config
    from .modeling import add_classifier_config, add_detnas_backbone_config, add_nasfpn_config
    from .search import add_search_config

    _add_dataset_config(cfg)
    add_registration_config(cfg)
    add_detnas_backbone_config(cfg)
    add_nasfpn_config(cfg)
    add_classifier_config(cfg)
    add_search_config(cfg)
    add_autoaugment_config(cfg)
    add_supernet_config(cfg)
    add_train_alarm_config(cfg)
    return cfg
