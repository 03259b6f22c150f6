"""``SupernetClassifier``: ImageNet-style classification pretraining of a DetNAS backbone (supernet or fixed).

DetNAS step 1 (Chen et al., NeurIPS 2019): the supernet is first trained as a classifier, then its body initialises
the detection supernet. The body lives at ``backbone.body.*`` (a :class:`DetNASBackbone`, as in the detectors)
and the head at ``classifier_head.*``, so :class:`~detnas_d2.modeling.checkpoint.DetNASCheckpointer` can move
the body into a detector and drop the head. For a supernet (MODEL.DETNAS.ARCH empty) a training or search
hook sets the path with ``find_detnas_backbone(model).set_arch(arch)`` before each forward.
"""

from typing import Dict, List, Sequence, Union

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY
from torch import nn

from ..nn.norm import norm_factory
from ..nn.shufflenet import ClassifierHead
from .detnas_backbone import DetNASBackbone, build_detnas_backbone

__all__ = ["CLASSIFIER_HEAD_PREFIX", "SupernetClassifier", "build_classifier_head"]

#: state-dict prefix of the classification head (dropped when the weights initialise a detector)
CLASSIFIER_HEAD_PREFIX = "classifier_head."
#: the backbone output the head consumes
HEAD_INPUT_FEATURE = "res5"


def build_classifier_head(cfg: CfgNode, backbone: DetNASBackbone) -> ClassifierHead:
    """The DetNAS / SPOS classification head for ``backbone``'s body: width from its (scaled) layout, norm and style
    from MODEL.DETNAS.

    Dropout is the style's (DetNAS: Dropout2d 0.2 before pooling; SPOS: Dropout 0.1 after pooling).
    """
    node = cfg.MODEL.DETNAS
    layout = backbone.body.layout
    return ClassifierHead(
        in_channels=backbone.output_shape()[HEAD_INPUT_FEATURE].channels,
        head_channels=layout.head_channels,
        num_classes=cfg.MODEL.CLASSIFIER.NUM_CLASSES,
        norm=norm_factory(node.NORM, affine=node.NORM_AFFINE, momentum=node.BN_MOMENTUM),
        style=node.STYLE,
    )


@META_ARCH_REGISTRY.register()
class SupernetClassifier(nn.Module):
    """Image classifier = DetNAS backbone (``backbone``) + classification head (``classifier_head``).

    Input: list of ``{"image": CHW tensor in INPUT.FORMAT, "label": int}`` (all images the same size).
    Training returns ``{"loss_cls"}`` (label-smoothed cross-entropy); evaluation returns ``[{"logits"}]``.

    Args:
        backbone: the DetNAS backbone; it must output the last stage (res5).
        head: the classification head on that output (see :func:`build_classifier_head`).
        pixel_mean: per-channel mean subtracted from the input (0 for Megvii weights).
        pixel_std: per-channel std the input is divided by (1 for Megvii weights).
        label_smoothing: label smoothing of the cross-entropy, in [0, 1).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: DetNASBackbone,
        head: nn.Module,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"MODEL.CLASSIFIER.LABEL_SMOOTHING must be in [0, 1), got {label_smoothing!r}")
        if HEAD_INPUT_FEATURE not in backbone.output_shape():
            raise ValueError(
                f"the classifier needs backbone output {HEAD_INPUT_FEATURE!r}; "
                f"the backbone gives {list(backbone.output_shape())}"
            )
        self.backbone = backbone
        self.classifier_head = head
        self.label_smoothing = label_smoothing
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        backbone_cfg = cfg.clone()
        backbone_cfg.defrost()
        backbone_cfg.MODEL.DETNAS.OUT_FEATURES = [HEAD_INPUT_FEATURE]
        backbone = build_detnas_backbone(backbone_cfg, ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN)))
        return {
            "backbone": backbone,
            "head": build_classifier_head(cfg, backbone),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "label_smoothing": cfg.MODEL.CLASSIFIER.LABEL_SMOOTHING,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: List[Dict]) -> torch.Tensor:
        """Stack the images into an (N, C, H, W) float batch normalised with PIXEL_MEAN / PIXEL_STD."""
        sizes = {tuple(item["image"].shape) for item in batched_inputs}
        if len(sizes) != 1:
            raise ValueError(
                f"SupernetClassifier needs equally sized images in a batch, got shapes {sorted(sizes)} "
                "(crop them to INPUT.CLS_CROP_SIZE, e.g. with ClassificationMapper)"
            )
        images = torch.stack([item["image"].to(self.device, torch.float32) for item in batched_inputs])
        return (images - self.pixel_mean) / self.pixel_std

    def forward(self, batched_inputs: List[Dict]) -> Union[Dict[str, torch.Tensor], List[Dict[str, torch.Tensor]]]:
        logits = self.classifier_head(self.backbone(self.preprocess_image(batched_inputs))[HEAD_INPUT_FEATURE])
        if not self.training:
            return [{"logits": row} for row in logits]
        if any("label" not in item for item in batched_inputs):
            raise ValueError("SupernetClassifier training needs a 'label' in every input dict")
        labels = torch.as_tensor([item["label"] for item in batched_inputs], dtype=torch.long, device=self.device)
        return {"loss_cls": F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)}
