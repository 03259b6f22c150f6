"""``DetNASCheckpointer``: loads DetNAS backbone weights across model types (classifier -> detector and back).

A DetNAS body sits at a different place in each model: ``backbone.body.`` in the SupernetClassifier and
``build_detnas_backbone`` detectors, ``backbone.bottom_up.body.`` under the FPN builders. When a checkpoint
holds exactly one DetNAS body (keys ``<prefix>body.stem.*`` / ``<prefix>body.blocks.*``) and the model holds
exactly one ``DetNASBackbone`` elsewhere, the body keys are moved to the model's prefix. The classifier's head
(``classifier_head.*``) is dropped when the model has none, and supernet weights loaded into a fixed
architecture are reduced to that architecture's path (:func:`extract_subnet_state_dict`). Everything else,
including resuming a model's own checkpoints and detectron2 / Caffe2 model-zoo files, loads exactly as with
``DetectionCheckpointer``.
"""
import re
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, NamedTuple, Optional

from detectron2.checkpoint import DetectionCheckpointer
from torch import nn

from .classifier import CLASSIFIER_HEAD_PREFIX
from .detnas_backbone import DetNASBackbone
from .weight_inheritance import extract_subnet_state_dict

__all__ = ["DetNASCheckpointer", "DetNASWeightMapping", "map_detnas_weights"]

_BODY_KEY = re.compile(r"^(?P<prefix>(?:.*?\.)?body\.)(?:stem|blocks)\.")
#: buffer that fixed networks record their encoding in (absent from supernet state dicts)
_ARCH_RECORD = "architecture"


class DetNASWeightMapping(NamedTuple):
    """What :func:`map_detnas_weights` did: the state dict to load and the changes made to it."""

    state_dict: Dict[str, Any]
    source_prefix: Optional[str]  # body prefix in the checkpoint (None: no mapping, no single body in both)
    target_prefix: Optional[str]  # body prefix in the model (None: no mapping)
    dropped_head_keys: List[str]  # classification-head keys the model has no place for
    dropped_candidate_keys: List[str]  # supernet candidates outside a fixed model's architecture

    @property
    def changed(self) -> bool:
        """True if any key was renamed or dropped."""
        renamed = self.source_prefix is not None and self.source_prefix != self.target_prefix
        return renamed or bool(self.dropped_head_keys or self.dropped_candidate_keys)


def _model_backbone(model: nn.Module):
    """``(body prefix, backbone)`` of the model's only DetNASBackbone, or None if it has none or several."""
    found = [(name, module) for name, module in model.named_modules() if isinstance(module, DetNASBackbone)]
    if len(found) != 1:
        return None
    name, backbone = found[0]
    return (f"{name}.body." if name else "body."), backbone


def map_detnas_weights(state_dict: Mapping[str, Any], model: nn.Module) -> DetNASWeightMapping:
    """``state_dict`` adapted to ``model``'s DetNAS body prefix, head and architecture (see module docstring).

    Returns a copy of the input, prefixes None, when the checkpoint or the model has no single DetNAS body.
    """
    target = _model_backbone(model)
    sources = {match["prefix"] for match in map(_BODY_KEY.match, state_dict) if match}
    if target is None or len(sources) != 1:
        return DetNASWeightMapping(OrderedDict(state_dict), None, None, [], [])
    (source,), (prefix, backbone) = sources, target
    model_keys = set(model.state_dict())
    mapped, dropped_head = OrderedDict(), []
    for key, value in state_dict.items():
        if key.startswith(CLASSIFIER_HEAD_PREFIX) and key not in model_keys:
            dropped_head.append(key)
            continue
        mapped[prefix + key[len(source):] if key.startswith(source) else key] = value

    dropped_candidates = []
    if not backbone.is_supernet and prefix + _ARCH_RECORD not in mapped:  # supernet weights, fixed model
        body_weights = {key: value for key, value in mapped.items() if key.startswith(prefix)}
        subnet = extract_subnet_state_dict(body_weights, backbone.arch, space=backbone.body.space)
        dropped_candidates = [key for key in body_weights if key not in subnet]
        mapped = OrderedDict((key, value) for key, value in mapped.items() if not key.startswith(prefix))
        mapped.update(subnet)
    return DetNASWeightMapping(mapped, source, prefix, dropped_head, dropped_candidates)


class DetNASCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer that maps DetNAS body weights to this model (classifier -> detector, supernet -> fixed).

    Checkpoints loaded through detectron2's name-matching heuristics (model-zoo .pkl files) are left to it.
    """

    def _load_model(self, checkpoint: Dict[str, Any]):
        if not checkpoint.get("matching_heuristics", False):
            mapping = map_detnas_weights(checkpoint["model"], self.model)
            if mapping.changed:
                self._log_mapping(mapping)
            checkpoint["model"] = mapping.state_dict
        return super()._load_model(checkpoint)

    def _log_mapping(self, mapping: DetNASWeightMapping) -> None:
        if mapping.source_prefix != mapping.target_prefix:
            self.logger.info(f"[DetNASCheckpointer] DetNAS body weights '{mapping.source_prefix}*' loaded into "
                             f"'{mapping.target_prefix}*'")
        if mapping.dropped_head_keys:
            self.logger.info(f"[DetNASCheckpointer] dropped {len(mapping.dropped_head_keys)} classification-head "
                             f"tensors unused by {type(self.model).__name__}: {', '.join(mapping.dropped_head_keys)}")
        if mapping.dropped_candidate_keys:
            arch = _model_backbone(self.model)[1].body.resolved_arch
            self.logger.info(f"[DetNASCheckpointer] supernet weights reduced to the fixed architecture {arch}: "
                             f"{len(mapping.dropped_candidate_keys)} tensors of other candidates not loaded")
