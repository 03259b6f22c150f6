"""Faster R-CNN FPN with the searched COCO-FPN-300M backbone on the embedded shapes data: the LazyConfig counterpart
of configs/shapes/supernet_fpn.yaml with MODEL.DETNAS.ARCH "COCO-FPN-300M" (128 px, 5 classes, CPU-sized).

    python lazy_train_net.py --config-file configs/lazy/faster_rcnn_detnas_fpn_shapes.py
"""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import DatasetMapper, build_detection_test_loader, get_detection_dataset_dicts
from detectron2.evaluation import COCOEvaluator
from detectron2.model_zoo import get_config
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler
from omegaconf import OmegaConf

from detnas_d2.data.resumable_loader import build_resumable_train_loader
from detnas_d2.modeling.detnas_backbone import detnas_bottom_up

# the sizes of the generated shapes splits (yacs: DATASETS.SHAPES); the trainer registers shapes_{train,search,val}
shapes = dict(num_train=600, num_search=150, num_val=150, image_size=128, seed=0)
image_size = 128

# detectron2's Mask R-CNN FPN without its mask branch, resized for 128 px images and 5 classes
model = get_config("common/models/mask_rcnn_fpn.py").model
model.backbone.bottom_up = L(detnas_bottom_up)(
    arch="COCO-FPN-300M",  # a registered name, a compact string such as "2120-2112-33130031-3132", or a list
    norm="BN",  # SyncBN on GPUs
    weight_sharing="kernel",  # Base-shapes.yaml: small-budget training from scratch (README "Why the supernet learns")
    zero_init_last_norm=True,
    out_features=["res2", "res3", "res4", "res5"],
)
model.backbone.out_channels = 64
model.backbone.norm = "BN"
model.pixel_mean, model.pixel_std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]  # raw BGR 0-255 input (DetNAS convention)
model.proposal_generator.head.in_channels = 64
model.proposal_generator.anchor_generator.sizes = [[8], [16], [32], [64], [128]]
model.proposal_generator.pre_nms_topk = (1000, 500)
model.proposal_generator.post_nms_topk = (500, 200)
model.roi_heads.update(num_classes=5, batch_size_per_image=128, mask_in_features=None, mask_pooler=None, mask_head=None)
model.roi_heads.box_head.input_shape.channels = 64
model.roi_heads.box_head.fc_dims = [256, 256]
model.roi_heads.box_predictor.input_shape.channels = 256
model.roi_heads.box_predictor.test_topk_per_image = 50

dataloader = OmegaConf.create()
dataloader.train = L(build_resumable_train_loader)(  # detectron2's build_detection_train_loader, resumable exactly
    dataset=L(get_detection_dataset_dicts)(names="shapes_train"),
    mapper=L(DatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=(image_size,), max_size=image_size, sample_style="choice"),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="BGR",
    ),
    total_batch_size=8,
    num_workers=1,
)
dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="shapes_val", filter_empty=False),
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=image_size, max_size=image_size)],
        image_format="BGR",
    ),
    num_workers=1,
)
dataloader.evaluator = L(COCOEvaluator)(dataset_name="${..test.dataset.names}")

optimizer = get_config("common/optim.py").SGD
optimizer.lr = 0.06  # 3x the stock R18-FPN's: the BN'd ShuffleNetV2 blocks learn far faster with it
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1], milestones=[700], num_updates="${train.max_iter}"),
    warmup_length=50 / 800,
    warmup_factor=0.001,
)

train = get_config("common/train.py").train
train.update(
    output_dir="output/lazy_faster_rcnn_detnas_fpn_shapes",
    max_iter=800,
    eval_period=800,
    log_period=20,
    device="cpu",
    seed=0,
)
train.checkpointer.period = 400
