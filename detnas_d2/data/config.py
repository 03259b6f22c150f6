"""Config keys of the data area: the embedded shapes data, your own datasets, AutoAugment and the mapper choice,
and the classification input path."""

from detectron2.config import CfgNode as CN

from ..utils.config import declare

#: the ``MAPPER_REGISTRY`` entry used unless ``DATALOADER.MAPPER_NAME`` or ``INPUT.AUTOAUGMENT.ENABLED`` says otherwise
DEFAULT_MAPPER_NAME = "DatasetMapper"


def add_data_config(cfg: CN) -> CN:
    """Declare every data key (``DATASETS.*``, ``DATALOADER.*``, ``INPUT.*``, ``TEST.CLS_*``); idempotent."""
    add_shapes_config(cfg)
    add_registration_config(cfg)
    add_autoaugment_config(cfg)
    add_classification_input_config(cfg)
    return cfg


def add_shapes_config(cfg: CN) -> CN:
    """Declare ``DATASETS.SHAPES.*``, the sizes of the embedded shapes splits."""
    declare(cfg.DATASETS, "SHAPES", CN())
    shapes = cfg.DATASETS.SHAPES
    declare(shapes, "NUM_TRAIN", 600)  # images in shapes_train (supernet training split)
    declare(shapes, "NUM_SEARCH", 150)  # images in shapes_search (held out from train; search fitness set)
    declare(shapes, "NUM_VAL", 150)  # images in shapes_val (final evaluation)
    declare(shapes, "IMAGE_SIZE", 128)  # side of the square generated images, pixels
    declare(shapes, "SEED", 0)  # generator seed; the same seed gives byte-identical files
    return cfg


def add_registration_config(cfg: CN) -> CN:
    """Declare ``DATASETS.REGISTER``, ``DATASETS.SEARCH_HOLDOUT.*`` and ``DATALOADER.ON_BAD_IMAGE``."""
    # datasets to register, each ["coco", NAME, JSON_FILE, IMAGE_DIR] or ["voc", NAME, VOC_DIR, SPLIT]; in YAML:
    #   REGISTER:
    #     - ["coco", "my_train", "/data/my/train.json", "/data/my/images"]
    #     - ["voc", "my_voc", "/data/VOC2007", "trainval"]
    # --register-coco / --register-voc on the command line append here (and so reach config.yaml and every process)
    declare(cfg.DATASETS, "REGISTER", [])
    declare(cfg.DATASETS, "SEARCH_HOLDOUT", CN())
    holdout = cfg.DATASETS.SEARCH_HOLDOUT
    # images held out of SOURCE as the search (fitness) split, then SEARCH.DATASET; 0 = off
    declare(holdout, "SIZE", 0)
    # seed of the draw over sorted image ids; the same seed and SIZE give the same split
    declare(holdout, "SEED", 0)
    # dataset to split; "" = DATASETS.TRAIN[0]. DATASETS.TRAIN then trains on TRAIN_NAME
    declare(holdout, "SOURCE", "")
    declare(holdout, "TRAIN_NAME", "")  # the rest of SOURCE; "" = "<SOURCE>_minus_search"
    declare(holdout, "SEARCH_NAME", "")  # the held-out images; "" = "<SOURCE>_search" (and SEARCH.DATASET's default)
    # an image that fails to load: "fail" (error naming the file) or "skip" (warn, draw another; training only)
    declare(cfg.DATALOADER, "ON_BAD_IMAGE", "fail")
    return cfg


def add_autoaugment_config(cfg: CN) -> CN:
    """Declare ``INPUT.AUTOAUGMENT.*`` and ``DATALOADER.MAPPER_NAME``."""
    declare(cfg.INPUT, "AUTOAUGMENT", CN())
    node = cfg.INPUT.AUTOAUGMENT
    declare(node, "ENABLED", False)  # use AutoAugmentDatasetMapper when DATALOADER.MAPPER_NAME is the default
    declare(node, "POLICY", "v0")  # published policy: "v0" (the paper's), "v1", "v2", "v3" or "test"
    declare(node, "CUSTOM_POLICY", [])  # [[[op, prob, level], ...], ...]; replaces POLICY when non-empty
    declare(node, "BOX_MODE", "drop")  # "drop" boxes whose visible area vanishes, or keep TF's "reference" slivers
    declare(node, "REFERENCE_CONTRAST", False)  # Contrast blends to TF's buggy gray level instead of the mean
    declare(cfg.DATALOADER, "MAPPER_NAME", DEFAULT_MAPPER_NAME)  # MAPPER_REGISTRY entry for the data loaders
    return cfg


def add_classification_input_config(cfg: CN) -> CN:
    """Declare the ``INPUT.CLS_*`` and ``TEST.CLS_*`` keys of the classification data path."""
    # side of the square image the classifier sees, in training and evaluation
    declare(cfg.INPUT, "CLS_CROP_SIZE", 224)
    # evaluation: short side resized to this (cv2 bilinear) before the centre crop
    declare(cfg.INPUT, "CLS_RESIZE_SIZE", 256)
    # training: range of (crop area / image area) of the random-resized crop
    declare(cfg.INPUT, "CLS_CROP_SCALE", (0.08, 1.0))
    # training: range of crop aspect ratio w/h (log-uniform)
    declare(cfg.INPUT, "CLS_CROP_RATIO", (3.0 / 4.0, 4.0 / 3.0))
    # training: brightness/contrast/saturation factors from [1 - x, 1 + x]; 0 = off
    declare(cfg.INPUT, "CLS_COLOR_JITTER", 0.4)
    declare(cfg.TEST, "CLS_IMS_PER_BATCH", 32)  # evaluation batch size per process on classification datasets
    return cfg
