"""The model zoo's new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py with its ResNet-50 replaced by the searched DetNAS
COCO-FPN-300M backbone (nothing else changed); COCO as detectron2 expects it under $DETECTRON2_DATASETS."""

from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config

from detnas_d2.modeling.detnas_backbone import detnas_bottom_up

_zoo = get_config("new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py")
dataloader, model, optimizer, train = _zoo.dataloader, _zoo.model, _zoo.optimizer, _zoo.train
lr_multiplier = _zoo.lr_multiplier
_outputs = model.backbone.bottom_up.out_features  # res2..res5, which the FPN reads
model.backbone.bottom_up = L(detnas_bottom_up)(arch="COCO-FPN-300M", norm="SyncBN", out_features=_outputs)
