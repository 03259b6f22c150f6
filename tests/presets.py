"""Shared test settings: repository paths and the tiny command-line overrides (KEY VALUE lists) several test modules
run the shapes configs with, so that one tiny setting has one name instead of a copy per module."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = os.path.join(REPO, "configs", "shapes")
STOCK_CONFIG = os.path.join(SHAPES, "faster_rcnn_R18_FPN.yaml")
SUPERNET_CONFIG = os.path.join(SHAPES, "supernet_fpn.yaml")
SEARCH_CONFIG = os.path.join(SHAPES, "search_fpn.yaml")

# ------------------------------------------------------------------------------------------------ building blocks
#: train on 64x64 inputs
TRAIN_AT_64 = ["INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64"]
#: evaluate on 64x64 inputs
TEST_AT_64 = ["INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64"]
#: one anchor size per FPN level that fits objects in 64x64 images
ANCHORS_64 = ["MODEL.ANCHOR_GENERATOR.SIZES", "[[8], [16], [32], [48], [64]]"]
#: BN recalibration on 2 batches of 4 images, of a search candidate and of a path evaluated during training
TINY_BN_RECALIB = [
    "SEARCH.BN_RECALIB.NUM_BATCHES",
    "2",
    "SEARCH.BN_RECALIB.BATCH_SIZE",
    "4",
    "SUPERNET.EVAL.BN_RECALIB.NUM_BATCHES",
    "2",
    "SUPERNET.EVAL.BN_RECALIB.BATCH_SIZE",
    "4",
]
#: latency timed once, without warm-up, on 32x32 inputs and the process CPU clock
TINY_LATENCY = [
    "SEARCH.LATENCY.INPUT_SIZE",
    "(32, 32)",
    "SEARCH.LATENCY.WARMUP",
    "0",
    "SEARCH.LATENCY.RUNS",
    "1",
    "SEARCH.LATENCY.CLOCK",
    "cpu",
]
#: the evolution of a tiny search: 2 generations of 4 candidates
TINY_EVOLUTION = [
    "SEARCH.POPULATION",
    "4",
    "SEARCH.GENERATIONS",
    "2",
    "SEARCH.TOPK",
    "2",
    "SEARCH.NUM_MUTATION",
    "1",
    "SEARCH.NUM_CROSSOVER",
    "1",
]


def shapes_images(num_train, num_search, num_val, image_size=None):
    """Overrides for the generated shapes splits: image counts and, if given, the image side in pixels."""
    sizes = ["DATASETS.SHAPES.IMAGE_SIZE", str(image_size)] if image_size else []
    return [
        "DATASETS.SHAPES.NUM_TRAIN",
        str(num_train),
        "DATASETS.SHAPES.NUM_SEARCH",
        str(num_search),
        "DATASETS.SHAPES.NUM_VAL",
        str(num_val),
        *sizes,
    ]


#: train on 16 images of 64 px in the main process, nothing evaluated during or after training
TRAIN_ONLY_16_AT_64 = [
    "DATALOADER.NUM_WORKERS",
    "0",
    "TEST.EVAL_PERIOD",
    "0",
    "DATASETS.TEST",
    "()",
    "DATASETS.SHAPES.NUM_TRAIN",
    "16",
    "DATASETS.SHAPES.IMAGE_SIZE",
    "64",
    *TRAIN_AT_64,
]


# ------------------------------------------------------------------------------------------------ presets
#: the stock detectron2 R18-FPN of STOCK_CONFIG, trained 3 iterations on 8 images of 64 px
STOCK_TINY = [
    "SOLVER.MAX_ITER",
    "3",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.CHECKPOINT_PERIOD",
    "100",
    "MODEL.FPN.OUT_CHANNELS",
    "16",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "32",
    "MODEL.RESNETS.RES2_OUT_CHANNELS",
    "64",
    "DATALOADER.NUM_WORKERS",
    "0",
    "TEST.EVAL_PERIOD",
    "0",
    *shapes_images(8, 4, 4, image_size=64),
    *TRAIN_AT_64,
]
#: the data, input sizes and BN recalibration of a tiny supernet search (any detector)
SUPERNET_TINY_DATA = [
    "DATALOADER.NUM_WORKERS",
    "0",
    *shapes_images(64, 12, 4, image_size=64),
    *TRAIN_AT_64,
    *TEST_AT_64,
    *ANCHORS_64,
    *TINY_BN_RECALIB,
]
#: the quarter-width FPN supernet of SUPERNET_CONFIG / SEARCH_CONFIG on SUPERNET_TINY_DATA
SUPERNET_TINY = [
    "MODEL.DETNAS.WIDTH_MULT",
    "0.25",
    "MODEL.FPN.OUT_CHANNELS",
    "16",
    "MODEL.ROI_BOX_HEAD.CONV_DIM",
    "16",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "64",
    *SUPERNET_TINY_DATA,
]
#: a tiny search of the SUPERNET_TINY supernet under a 30M FLOPs backbone limit
SEARCH_TINY = [*TINY_EVOLUTION, "SEARCH.FLOPS_LIMIT", "30e6"]


# ------------------------------------------------------------------------------------------------ LazyConfig presets
LAZY = os.path.join(REPO, "configs", "lazy")
#: the shapes Faster R-CNN FPN / supernet LazyConfigs (key=value overrides) shrunk like SUPERNET_TINY: 12 training
#: images of 64 px, quarter-width backbone, 16-channel FPN, batches of 2 in the main process, 4 iterations
LAZY_SHAPES_TINY = [
    "shapes.num_train=12",
    "shapes.num_search=4",
    "shapes.num_val=4",
    "shapes.image_size=64",
    "dataloader.train.total_batch_size=2",
    "dataloader.train.num_workers=0",
    "dataloader.test.num_workers=0",
    "dataloader.train.mapper.augmentations.0.short_edge_length=[64]",
    "dataloader.train.mapper.augmentations.0.max_size=64",
    "dataloader.test.mapper.augmentations.0.short_edge_length=64",
    "dataloader.test.mapper.augmentations.0.max_size=64",
    "model.backbone.bottom_up.width_mult=0.25",
    "model.backbone.out_channels=16",
    "model.proposal_generator.head.in_channels=16",
    "model.proposal_generator.anchor_generator.sizes=[[8],[16],[32],[48],[64]]",
    "model.roi_heads.box_head.input_shape.channels=16",
    "model.roi_heads.box_head.fc_dims=[32,32]",
    "model.roi_heads.box_predictor.input_shape.channels=32",
    "train.max_iter=4",
    "train.checkpointer.period=2",
    "train.eval_period=0",
    "lr_multiplier.warmup_length=0",
    "lr_multiplier.scheduler.milestones=[3]",
]
#: evaluate a supernet on one path, BN recalibrated on one batch of 2 images
LAZY_SUPERNET_EVAL_TINY = [
    "supernet.eval.num_paths=1",
    "supernet.eval.bn_recalib.num_batches=1",
    "supernet.eval.bn_recalib.batch_size=2",
]
