"""Dataset mappers selectable by config, including the AutoAugment one.

``MAPPER_REGISTRY`` holds mapper classes built as ``cls(cfg, is_train=...)``; ``DATALOADER.MAPPER_NAME``
picks one. ``INPUT.AUTOAUGMENT.ENABLED`` switches the default ("DatasetMapper") to
"AutoAugmentDatasetMapper". Call :func:`~detnas_d2.data.config.add_autoaugment_config` on the cfg first.
"""

import copy
import logging

import numpy as np
import torch
from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BoxMode
from detectron2.utils.registry import Registry

from .autoaugment import AutoAugment
from .config import DEFAULT_MAPPER_NAME

MAPPER_REGISTRY = Registry("MAPPER")
MAPPER_REGISTRY.__doc__ = """
Registry of dataset mappers: classes constructed as ``mapper_class(cfg, is_train=bool)`` whose instances map a
detectron2 dataset dict to model inputs. Selected by ``cfg.DATALOADER.MAPPER_NAME``.
"""
MAPPER_REGISTRY.register(DatasetMapper)
AUTOAUGMENT_MAPPER_NAME = "AutoAugmentDatasetMapper"


def build_autoaugment(cfg: CN) -> AutoAugment:
    """The AutoAugment augmentation described by ``cfg.INPUT.AUTOAUGMENT`` for images in ``cfg.INPUT.FORMAT``."""
    node = cfg.INPUT.AUTOAUGMENT
    policy = node.CUSTOM_POLICY if len(node.CUSTOM_POLICY) else node.POLICY
    return AutoAugment(
        policy,
        box_mode=node.BOX_MODE,
        image_format=cfg.INPUT.FORMAT,
        reference_contrast=node.REFERENCE_CONTRAST,
    )


def non_crowd_boxes(annotations: list) -> np.ndarray:
    """XYXY_ABS boxes of the non-crowd annotations (crowd regions stay out of augmentation decisions)."""
    boxes = [
        BoxMode.convert(obj["bbox"], obj["bbox_mode"], BoxMode.XYXY_ABS)
        for obj in annotations
        if obj.get("iscrowd", 0) == 0
    ]
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


@MAPPER_REGISTRY.register()
class AutoAugmentDatasetMapper(DatasetMapper):
    """detectron2's DatasetMapper with detection AutoAugment run first, on the decoded original-resolution image.

    Order (the RetinaNet parser of the tensorflow/tpu reference code): decode -> AutoAugment (non-crowd boxes) ->
    the usual augmentations (crop, ResizeShortestEdge, RandomFlip from cfg) -> annotations transformed by all of
    them -> empty boxes dropped with every per-instance field (``filter_empty_instances``) and crowd annotations
    removed, as in detectron2. At inference (``is_train=False``) it behaves exactly like DatasetMapper.

    Args:
        is_train: training or inference mapping.
        autoaugment: the policy applied first (training only), or None for a plain DatasetMapper.
        **kwargs: the arguments of detectron2's ``DatasetMapper``.
    """

    @configurable
    def __init__(self, is_train: bool, *, autoaugment: AutoAugment | None, **kwargs):
        super().__init__(is_train, **kwargs)
        self.autoaugment = autoaugment
        if autoaugment is not None:
            logging.getLogger(__name__).info(
                f"[AutoAugmentDatasetMapper] AutoAugment before the augmentations, box_mode={autoaugment.box_mode}, "
                f"policy={[list(sub) for sub in autoaugment.policy]}"
            )

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        ret = super().from_config(cfg, is_train)
        ret["autoaugment"] = build_autoaugment(cfg) if is_train else None
        return ret

    def __call__(self, dataset_dict: dict) -> dict:
        if not self.is_train or self.autoaugment is None:
            return super().__call__(dataset_dict)
        dataset_dict = copy.deepcopy(dataset_dict)
        image = utils.read_image(dataset_dict["file_name"], format=self.image_format)
        utils.check_image_size(dataset_dict, image)
        sem_seg_gt = None
        if "sem_seg_file_name" in dataset_dict:
            sem_seg_gt = utils.read_image(dataset_dict.pop("sem_seg_file_name"), "L").squeeze(2)

        boxes = non_crowd_boxes(dataset_dict.get("annotations", []))
        aug_input = T.AugInput(image, boxes=boxes, sem_seg=sem_seg_gt)
        transforms = self.autoaugment(aug_input) + self.augmentations(aug_input)
        image, sem_seg_gt = aug_input.image, aug_input.sem_seg

        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if sem_seg_gt is not None:
            dataset_dict["sem_seg"] = torch.as_tensor(sem_seg_gt.astype("long"))
        if self.proposal_topk is not None:
            utils.transform_proposals(dataset_dict, image_shape, transforms, proposal_topk=self.proposal_topk)
        if "annotations" in dataset_dict:
            self._transform_annotations(dataset_dict, transforms, image_shape)
        return dataset_dict


def registered_mapper_names() -> list:
    """Sorted names of the entries of MAPPER_REGISTRY."""
    return sorted(name for name, _ in MAPPER_REGISTRY)


def _build_mapper(cfg: CN, is_train: bool):
    name = cfg.DATALOADER.MAPPER_NAME
    if name == DEFAULT_MAPPER_NAME and cfg.INPUT.AUTOAUGMENT.ENABLED:
        name = AUTOAUGMENT_MAPPER_NAME
    if name not in MAPPER_REGISTRY:
        raise ValueError(
            f"DATALOADER.MAPPER_NAME={name!r} is not registered; "
            f"registered mappers: {', '.join(registered_mapper_names())}"
        )
    return MAPPER_REGISTRY.get(name)(cfg, is_train=is_train)


def build_train_mapper(cfg: CN):
    """The training mapper chosen by ``DATALOADER.MAPPER_NAME`` / ``INPUT.AUTOAUGMENT.ENABLED``."""
    return _build_mapper(cfg, is_train=True)


def build_test_mapper(cfg: CN):
    """The same mapper in inference mode (no AutoAugment)."""
    return _build_mapper(cfg, is_train=False)
