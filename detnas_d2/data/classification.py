"""Classification data path for supernet pretraining: ImageNet-layout folders, the mapper, the test loader.

Dataset dicts are ``{"file_name", "image_id", "label"}`` (see :func:`datasets.load_image_folder`); such
datasets carry ``evaluator_type="classification"`` in their metadata. Augmentation follows the DetNAS/SPOS
ImageNet recipe (Megvii reference code): training = random-resized crop, colour jitter 0.4, horizontal flip;
evaluation = short side resized with cv2 bilinear, then a centre crop. Call
:func:`~detnas_d2.data.config.add_classification_input_config` first.
"""

import math
from typing import List, Sequence, Tuple

import cv2
import numpy as np
import torch
from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.data import MetadataCatalog, build_detection_test_loader
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from .datasets import CLASSIFICATION_EVALUATOR_TYPE
from .mappers import MAPPER_REGISTRY

__all__ = [
    "CLASSIFICATION_EVALUATOR_TYPE",
    "CenterCrop",
    "ClassificationMapper",
    "CV2ResizeTransform",
    "RandomResizedCrop",
    "RandomSaturationInFormat",
    "ResizeShortestEdgeCV2",
    "build_classification_augmentations",
    "build_test_loader_for",
    "is_classification_dataset",
]

#: ITU-R 601 luma weights of the (R, G, B) channels, as in PIL's ImageEnhance.Color
_LUMA_RGB = (0.299, 0.587, 0.114)


# ------------------------------------------------------------------------------------------- augmentations
class CV2ResizeTransform(T.ResizeTransform):
    """ResizeTransform whose image resize is cv2 bilinear (the DetNAS/SPOS ImageNet convention, no antialias)."""

    def apply_image(self, img: np.ndarray, interp=None) -> np.ndarray:
        if interp is not None:  # e.g. nearest-neighbour for segmentation maps: detectron2's own path
            return super().apply_image(img, interp)
        if img.shape[:2] != (self.h, self.w):
            raise ValueError(f"CV2ResizeTransform expects a {self.h}x{self.w} image, got {img.shape[0]}x{img.shape[1]}")
        resized = cv2.resize(img, (self.new_w, self.new_h), interpolation=cv2.INTER_LINEAR)
        return resized.reshape(resized.shape[:2] + img.shape[2:])  # cv2 drops a trailing channel axis of 1


class RandomResizedCrop(T.Augmentation):
    """Crop a random box of relative area in ``scale`` and aspect ratio (w/h) in ``ratio``, resize it to ``size``.

    Inception-style sampling as in torchvision: up to ``max_tries`` draws (area uniform, ratio log-uniform);
    if none fits, the largest centred box whose aspect ratio is within ``ratio``.

    Args:
        size: side of the square output.
        scale: (min, max) area of the crop relative to the image.
        ratio: (min, max) aspect ratio (width / height) of the crop.
        max_tries: random draws before falling back to the centred box.
    """

    def __init__(
        self,
        size: int,
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        max_tries: int = 10,
    ):
        super().__init__()
        if not (isinstance(size, int) and size > 0):
            raise ValueError(f"RandomResizedCrop size must be a positive int, got {size!r}")
        if not (len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"RandomResizedCrop scale must be (lo, hi) with 0 < lo <= hi <= 1, got {tuple(scale)}")
        if not (len(ratio) == 2 and 0 < ratio[0] <= ratio[1]):
            raise ValueError(f"RandomResizedCrop ratio must be (lo, hi) with 0 < lo <= hi, got {tuple(ratio)}")
        self.size = size
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.max_tries = max_tries

    def sample_box(self, height: int, width: int) -> Tuple[int, int, int, int]:
        """A crop box ``(x0, y0, w, h)`` inside a ``height`` x ``width`` image."""
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(self.max_tries):
            area = height * width * np.random.uniform(*self.scale)
            aspect = math.exp(np.random.uniform(*log_ratio))
            w = int(round(math.sqrt(area * aspect)))
            h = int(round(math.sqrt(area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                return np.random.randint(0, width - w + 1), np.random.randint(0, height - h + 1), w, h
        aspect = width / height
        w, h = width, height
        if aspect < self.ratio[0]:
            h = int(round(width / self.ratio[0]))
        elif aspect > self.ratio[1]:
            w = int(round(height * self.ratio[1]))
        return (width - w) // 2, (height - h) // 2, w, h

    def get_transform(self, image: np.ndarray) -> T.Transform:
        x0, y0, w, h = self.sample_box(*image.shape[:2])
        return T.TransformList([T.CropTransform(x0, y0, w, h), CV2ResizeTransform(h, w, self.size, self.size)])


class ResizeShortestEdgeCV2(T.Augmentation):
    """Resize so that the short side is ``size`` (aspect ratio kept), with cv2 bilinear."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_transform(self, image: np.ndarray) -> T.Transform:
        h, w = image.shape[:2]
        new_h, new_w = T.ResizeShortestEdge.get_output_shape(h, w, self.size, max_size=math.inf)
        return CV2ResizeTransform(h, w, new_h, new_w)


class CenterCrop(T.Augmentation):
    """Crop the central ``size`` x ``size`` square."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_transform(self, image: np.ndarray) -> T.Transform:
        h, w = image.shape[:2]
        if h < self.size or w < self.size:
            raise ValueError(f"CenterCrop({self.size}) needs an image of at least that size, got {h}x{w}")
        return T.CropTransform((w - self.size) // 2, (h - self.size) // 2, self.size, self.size)


class RandomSaturationInFormat(T.Augmentation):
    """Blend with the grayscale image by a random factor in [lo, hi], for RGB or BGR images.

    detectron2's ``T.RandomSaturation`` assumes RGB channel order; here the luma weights follow ``image_format``.
    """

    def __init__(self, intensity_min: float, intensity_max: float, image_format: str):
        super().__init__()
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"saturation jitter needs INPUT.FORMAT 'RGB' or 'BGR', got {image_format!r}")
        self.intensity_min, self.intensity_max = intensity_min, intensity_max
        self.luma = np.asarray(_LUMA_RGB if image_format == "RGB" else _LUMA_RGB[::-1], dtype=np.float32)

    def get_transform(self, image: np.ndarray) -> T.Transform:
        factor = np.random.uniform(self.intensity_min, self.intensity_max)
        grayscale = image.astype(np.float32).dot(self.luma)[:, :, np.newaxis]
        return T.BlendTransform(src_image=grayscale, src_weight=1 - factor, dst_weight=factor)


def build_classification_augmentations(cfg: CN, is_train: bool) -> List[T.Augmentation]:
    """The recipe's augmentations from ``cfg.INPUT`` (training: crop, jitter, flip; evaluation: resize, centre crop)."""
    node = cfg.INPUT
    crop = node.CLS_CROP_SIZE
    if not is_train:
        if node.CLS_RESIZE_SIZE < crop:
            raise ValueError(
                f"INPUT.CLS_RESIZE_SIZE={node.CLS_RESIZE_SIZE} must be >= INPUT.CLS_CROP_SIZE={crop} "
                "(the centre crop is taken from the resized image)"
            )
        return [ResizeShortestEdgeCV2(node.CLS_RESIZE_SIZE), CenterCrop(crop)]
    augs = [RandomResizedCrop(crop, scale=node.CLS_CROP_SCALE, ratio=node.CLS_CROP_RATIO)]
    jitter = node.CLS_COLOR_JITTER
    if not 0 <= jitter < 1:
        raise ValueError(f"INPUT.CLS_COLOR_JITTER must be in [0, 1), got {jitter!r}")
    if jitter > 0:
        low, high = 1 - jitter, 1 + jitter
        augs += [
            T.RandomBrightness(low, high),
            T.RandomContrast(low, high),
            RandomSaturationInFormat(low, high, node.FORMAT),
        ]
    flips = {"horizontal": dict(horizontal=True, vertical=False), "vertical": dict(horizontal=False, vertical=True)}
    if node.RANDOM_FLIP not in ("none", *flips):
        raise ValueError(f"INPUT.RANDOM_FLIP must be 'none', 'horizontal' or 'vertical', got {node.RANDOM_FLIP!r}")
    if node.RANDOM_FLIP != "none":
        augs.append(T.RandomFlip(prob=0.5, **flips[node.RANDOM_FLIP]))
    return augs


# ------------------------------------------------------------------------------------------------ mapper
@MAPPER_REGISTRY.register()
class ClassificationMapper:
    """Maps ``{"file_name", "image_id", "label"}`` to ``{"image": CHW uint8 tensor in INPUT.FORMAT, "label", ...}``.

    Args:
        is_train: whether the training augmentations apply (also selects them when built from a config).
        augmentations: detectron2 augmentations applied in order to the decoded image.
        image_format: INPUT.FORMAT of the decoded image (e.g. "BGR").
    """

    @configurable
    def __init__(self, is_train: bool, *, augmentations: Sequence[T.Augmentation], image_format: str):
        self.is_train = is_train
        self.augmentations = T.AugmentationList(list(augmentations))
        self.image_format = image_format

    @classmethod
    def from_config(cls, cfg: CN, is_train: bool = True) -> dict:
        return {
            "is_train": is_train,
            "augmentations": build_classification_augmentations(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
        }

    def __call__(self, dataset_dict: dict) -> dict:
        if "label" not in dataset_dict:
            raise ValueError(
                f"ClassificationMapper needs an integer 'label' in each dataset dict; {dataset_dict.get('file_name')} "
                f"has keys {sorted(dataset_dict)} (is this a detection dataset?)"
            )
        image = utils.read_image(dataset_dict["file_name"], format=self.image_format)
        aug_input = T.AugInput(image)
        self.augmentations(aug_input)
        return {
            "image": torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1))),
            "label": int(dataset_dict["label"]),
            "image_id": dataset_dict.get("image_id"),
            "file_name": dataset_dict["file_name"],
        }


def is_classification_dataset(dataset_name: str) -> bool:
    """True if the dataset's metadata declares ``evaluator_type == "classification"``."""
    return MetadataCatalog.get(dataset_name).get("evaluator_type") == CLASSIFICATION_EVALUATOR_TYPE


def build_test_loader_for(cfg: CN, dataset_name: str):
    """detectron2's test loader for ``dataset_name``: ClassificationMapper batches for classification datasets,
    detectron2's default (DatasetMapper, batch 1) for the others."""
    if is_classification_dataset(dataset_name):
        return build_detection_test_loader(
            cfg, dataset_name, mapper=ClassificationMapper(cfg, is_train=False), batch_size=cfg.TEST.CLS_IMS_PER_BATCH
        )
    return build_detection_test_loader(cfg, dataset_name)
