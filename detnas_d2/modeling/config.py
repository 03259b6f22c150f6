"""Config keys of the modeling area: the DetNAS backbone (``MODEL.DETNAS``), the neck (``MODEL.NECK``,
``MODEL.NASFPN``) and the supernet classifier (``MODEL.CLASSIFIER``)."""

from detectron2.config import CfgNode as CN

from ..data.config import add_classification_input_config
from ..utils.config import declare


def add_modeling_config(cfg: CN) -> CN:
    """Declare every ``MODEL.*`` key of the package; idempotent."""
    add_detnas_backbone_config(cfg)
    add_nasfpn_config(cfg)
    add_classifier_config(cfg)
    return cfg


def add_detnas_backbone_config(cfg: CN) -> CN:
    """Declare ``MODEL.DETNAS.*``, the DetNAS backbone (supernet or fixed architecture)."""
    declare(cfg.MODEL, "DETNAS", CN())
    node = cfg.MODEL.DETNAS
    # "small" (20 blocks, 300M) or "large" (40 blocks, 1.3G); the supernet's space and the
    # space of a list/string ARCH (a registered ARCH name brings its own space and widths)
    declare(node, "SPACE", "small")
    # None or "" = supernet (all candidates; the path is set at run time via set_arch);
    # a list of ints, a compact string ("2120-2112-33130031-3132") or a registered name
    # (e.g. "COCO-FPN-300M", "DetNASNet-3.8G") = fixed network of that architecture
    declare(node, "ARCH", None)
    # multiplier on all channel widths (rounded to multiples of 4); 1.0 = published widths
    declare(node, "WIDTH_MULT", 1.0)
    # backbone normalisation: "BN", "SyncBN", "GN" or "FrozenBN" (FrozenBN: fixed ARCH only)
    declare(node, "NORM", "SyncBN")
    # False = affine-free BN as in the SPOS ImageNet supernet (DetNAS uses affine BN)
    declare(node, "NORM_AFFINE", True)
    # BN momentum (PyTorch convention): DetNAS used 0.1 for the supernet, 0.01 for fixed archs
    declare(node, "BN_MOMENTUM", 0.1)
    # supernet only: "none" = independent candidates (DetNAS/SPOS reference); "kernel" = k3/k5/k7 share one
    # k7 block (centre crops) and the Xception-like block shares its 1x1s and projection (detnas_d2.nn.sharing);
    # same architectures and checkpoint keys, but paths learn at small budgets
    declare(node, "WEIGHT_SHARING", "none")
    # True = every candidate's last main-branch norm starts at gamma 0 (blocks start as pass-through plus
    # zeros, like zero-init residuals); only affects training from scratch, not loaded weights
    declare(node, "ZERO_INIT_LAST_NORM", False)
    # "detnas" (biased stem conv) or "spos" (bias-free stem conv); must match the weights
    declare(node, "STYLE", "detnas")
    # outputs of build_detnas_backbone (the FPN builders use MODEL.FPN.IN_FEATURES instead)
    declare(node, "OUT_FEATURES", ["res2", "res3", "res4", "res5"])
    return cfg


def add_nasfpn_config(cfg: CN) -> CN:
    """Declare ``MODEL.NECK.*`` (any registered neck on a bottom-up backbone) and ``MODEL.NASFPN.*``."""
    declare(cfg.MODEL, "NECK", CN())
    neck = cfg.MODEL.NECK
    declare(neck, "NAME", "NASFPN")  # neck in NECK_REGISTRY used by build_nasfpn_backbone: NASFPN | FPN
    declare(neck, "BOTTOM_UP", "build_resnet_backbone")  # BACKBONE_REGISTRY name of the bottom-up network
    declare(neck, "IN_FEATURES", ["res3", "res4", "res5"])  # bottom-up features used as C3, C4, C5 (strides 8-32)
    declare(cfg.MODEL, "NASFPN", CN())
    nasfpn = cfg.MODEL.NASFPN
    declare(nasfpn, "NUM_REPEATS", 7)  # stacked pyramid blocks, each with its own weights (paper: 7; proxy: 3)
    declare(nasfpn, "CHANNELS", 256)  # channels of every pyramid level inside the neck and of p3..p7
    declare(nasfpn, "ARCH", "NAS-FPN")  # registered name, JSON cell list, compact 'l,op,in1,in2 | ...' string
    declare(nasfpn, "NORM", "BN")  # norm after each neck conv: BN, SyncBN, GN, ... or "" for none (conv bias)
    declare(nasfpn, "ATTENTION", CN())
    declare(nasfpn.ATTENTION, "POOL", "max")  # global pooling of the attention weights: max (TF) | avg (mmdet)
    declare(nasfpn.ATTENTION, "SOURCE", "coarser")  # attention input: coarser (TF) | finer (mmdet) | second
    declare(nasfpn, "DROPBLOCK", CN())
    declare(nasfpn.DROPBLOCK, "DROP_PROB", 0.0)  # DropBlock after each cell's norm, training only; 0 disables
    declare(nasfpn.DROPBLOCK, "BLOCK_SIZE", 3)  # odd side of the dropped squares
    declare(nasfpn, "LEVEL_RESIDUAL", False)  # output cells add their level's block input (BiFPN's same-level edge)
    declare(nasfpn, "OUTPUT_NORM_INIT", 1.0)  # initial gamma of the output cells' norms (0 + LEVEL_RESIDUAL: identity)
    declare(nasfpn, "ONE_SHOT", False)  # build the one-shot neck supernet (set_arch selects the path)
    return cfg


def add_classifier_config(cfg: CN) -> CN:
    """Declare ``MODEL.CLASSIFIER.*`` and what the classifier also reads (``MODEL.DETNAS.*``, the classification
    input keys)."""
    add_detnas_backbone_config(cfg)
    add_classification_input_config(cfg)
    declare(cfg.MODEL, "CLASSIFIER", CN())
    declare(cfg.MODEL.CLASSIFIER, "NUM_CLASSES", 1000)  # classes of the classification head (ImageNet: 1000)
    # label smoothing of the cross-entropy loss (SPOS/DetNAS ImageNet recipe: 0.1)
    declare(cfg.MODEL.CLASSIFIER, "LABEL_SMOOTHING", 0.1)
    return cfg
