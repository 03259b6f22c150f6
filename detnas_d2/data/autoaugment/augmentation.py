"""The ``AutoAugment`` detectron2 Augmentation: per call, one uniformly chosen sub-policy runs its ops in order.

Usage::

    aug_input = T.AugInput(image_rgb_uint8, boxes=xyxy_abs_boxes)  # original resolution, crowd boxes left out
    transforms = AutoAugment("v0")(aug_input)                       # aug_input.image / .boxes are updated
    keep = nonempty_boxes(aug_input.boxes)                           # "drop" mode: survivors

The returned TransformList re-applies the same augmentation to other data (annotation boxes, polygons), so
detectron2's ``transform_instance_annotations`` + ``filter_empty_instances`` drop the vanished boxes together
with their classes and other per-instance fields (this is what ``AutoAugmentDatasetMapper`` does).
"""

from typing import Sequence, Union

import numpy as np
from detectron2.data import transforms as T

from .ops import build_op, check_box_mode, check_image_format
from .policies import resolve_policy


class AutoAugment(T.Augmentation):
    """Detection AutoAugment (Zoph et al. 2019) over a published or custom policy.

    Args:
        policy: "v0" (the paper's), "v1", "v2", "v3", "test", or a list of sub-policies of
            ``(op_name, probability, level)`` entries.
        box_mode: "drop" (boxes whose visible area vanishes become empty) or "reference" (TF's slivers).
        image_format: channel order of the images, "RGB" or "BGR" (Color/Contrast use RGB luma weights).
        reference_contrast: reproduce the TF reference's Contrast gray level instead of the true mean.
    """

    def __init__(
        self,
        policy: Union[str, Sequence] = "v0",
        *,
        box_mode: str = "drop",
        image_format: str = "RGB",
        reference_contrast: bool = False,
    ):
        super().__init__()
        self.policy = resolve_policy(policy)
        self.box_mode = check_box_mode(box_mode)
        self.image_format = check_image_format(image_format)
        self.reference_contrast = bool(reference_contrast)
        #: one AugmentationList of op Augmentations per sub-policy
        self.sub_policies = [
            T.AugmentationList(
                [
                    build_op(
                        name,
                        prob,
                        level,
                        box_mode=box_mode,
                        image_format=image_format,
                        reference_contrast=reference_contrast,
                    )
                    for name, prob, level in sub_policy
                ]
            )
            for sub_policy in self.policy
        ]

    def __call__(self, aug_input) -> T.TransformList:
        """Augment ``aug_input`` in place with one random sub-policy; return the transforms used."""
        index = np.random.randint(len(self.sub_policies))
        return self.sub_policies[index](aug_input)

    def get_transform(self, image: np.ndarray, boxes: np.ndarray | None = None) -> T.TransformList:
        """Draw the transforms for ``image`` (and ``boxes``, needed by box-aware ops) without changing them."""
        return self(T.AugInput(image, boxes=boxes))
