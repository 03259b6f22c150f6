"""``DetNASCheckpointer``: loads DetNAS backbone weights across model types (classifier -> detector and back).

A DetNAS body sits at a different place in each model: ``backbone.body.`` in the SupernetClassifier and
``build_detnas_backbone`` detectors, ``backbone.bottom_up.body.`` under the FPN builders. When a checkpoint
holds exactly one DetNAS body (keys ``<prefix>body.stem.*`` / ``<prefix>body.blocks.*``) and the model holds
exactly one ``DetNASBackbone`` elsewhere, the body keys are moved to the model's prefix. The classifier's head
(``classifier_head.*``) is dropped when the model has none, and supernet weights loaded into a fixed
architecture are reduced to that architecture's path (:func:`extract_subnet_state_dict`). Everything else,
including resuming a model's own checkpoints and detectron2 / Caffe2 model-zoo files, loads exactly as with
``DetectionCheckpointer``.

Checkpoints are written atomically (a temporary file renamed over the target, ``last_checkpoint`` too): a kill or a
full disk never leaves a truncated ``model_*.pth``; a full disk stops the run with
:class:`~detnas_d2.utils.io.DiskFullError`, naming the folder and the bytes needed.

Failures are explicit: an unreadable file (truncated, or not a checkpoint) raises :class:`CheckpointFileError`
naming it, except that ``--resume`` falls back to the previous readable checkpoint of the folder with a
warning; backbone tensors whose shapes do not fit the model raise :class:`CheckpointShapeError` instead of
being skipped (fvcore's behaviour), so a model never silently trains from scratch.
"""

import io
import os
import re
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, NamedTuple

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from fvcore.common.checkpoint import _strip_prefix_if_present
from torch import nn

from ..utils.io import atomic_write
from .classifier import CLASSIFIER_HEAD_PREFIX
from .detnas_backbone import DetNASBackbone
from .weight_inheritance import extract_subnet_state_dict

__all__ = [
    "CheckpointFileError",
    "CheckpointShapeError",
    "DetNASCheckpointer",
    "DetNASWeightMapping",
    "map_detnas_weights",
]

_BODY_KEY = re.compile(r"^(?P<prefix>(?:.*?\.)?body\.)(?:stem|blocks)\.")
#: buffer that fixed networks record their encoding in (absent from supernet state dicts)
_ARCH_RECORD = "architecture"
#: state-dict prefix of every model's backbone; its tensors must fit the model exactly
BACKBONE_PREFIX = "backbone."
#: periodic checkpoints written by detectron2's PeriodicCheckpointer
_PERIODIC_CHECKPOINT = re.compile(r"^model_(\d+)\.pth$")


class CheckpointFileError(ValueError):
    """A checkpoint file that cannot be read (truncated, or not a checkpoint)."""


class CheckpointShapeError(ValueError):
    """Backbone tensors of a checkpoint whose shapes differ from the model's."""


class DetNASWeightMapping(NamedTuple):
    """What :func:`map_detnas_weights` did: the state dict to load and the changes made to it."""

    state_dict: Dict[str, Any]
    source_prefix: str | None  # body prefix in the checkpoint (None: no mapping, no single body in both)
    target_prefix: str | None  # body prefix in the model (None: no mapping)
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
        mapped[prefix + key[len(source) :] if key.startswith(source) else key] = value

    dropped_candidates = []
    if not backbone.is_supernet and prefix + _ARCH_RECORD not in mapped:  # supernet weights, fixed model
        body_weights = {key: value for key, value in mapped.items() if key.startswith(prefix)}
        subnet = extract_subnet_state_dict(body_weights, backbone.arch, space=backbone.body.space)
        dropped_candidates = [key for key in body_weights if key not in subnet]
        mapped = OrderedDict((key, value) for key, value in mapped.items() if not key.startswith(prefix))
        mapped.update(subnet)
    return DetNASWeightMapping(mapped, source, prefix, dropped_head, dropped_candidates)


def _final_hint(folder: str) -> str:
    """ ", e.g. <folder>/model_final.pth" where a training left one there."""
    final = os.path.join(folder, "model_final.pth")
    return f", e.g. {final}" if os.path.isfile(final) else ""


def _unreadable(path: str, reason: str) -> CheckpointFileError:
    return CheckpointFileError(
        f"cannot read checkpoint {path}: {reason}. The file is truncated (an interrupted download, copy or save) "
        "or is not a PyTorch (.pth) / detectron2 (.pkl) checkpoint; copy or download it again, or point "
        "MODEL.WEIGHTS at another file"
    )


def _check_checkpoint_content(path: str, loaded: Any) -> None:
    """A loaded checkpoint must be a dict whose "model" maps names to tensors or arrays."""
    model = loaded.get("model") if isinstance(loaded, dict) else None
    if not isinstance(model, Mapping):
        raise _unreadable(path, f"it holds a {type(loaded).__name__}, not a dict of weights")
    for key, value in model.items():
        if not isinstance(value, (torch.Tensor, np.ndarray)):
            raise _unreadable(path, f"entry '{key}' of its weights is a {type(value).__name__}, not a tensor")


def backbone_shape_mismatches(state_dict: Mapping[str, Any], model: nn.Module) -> List[tuple]:
    """``(key, checkpoint shape, model shape)`` of the backbone tensors whose shapes differ."""
    model_state = model.state_dict()
    return [
        (key, tuple(value.shape), tuple(model_state[key].shape))
        for key, value in state_dict.items()
        if key.startswith(BACKBONE_PREFIX)
        and key in model_state
        and tuple(value.shape) != tuple(model_state[key].shape)
    ]


def _shape_error(path: str, mismatches: List[tuple]) -> CheckpointShapeError:
    shown = "; ".join(
        f"'{key}' is {ckpt} in the checkpoint but {model} in the model" for key, ckpt, model in mismatches[:3]
    )
    more = f" (and {len(mismatches) - 3} more)" if len(mismatches) > 3 else ""
    return CheckpointShapeError(
        f"checkpoint {path}: {len(mismatches)} backbone tensors do not fit this model: {shown}{more}. It was saved "
        "from a backbone of other widths (e.g. MODEL.DETNAS.WIDTH_MULT) or another architecture; build the "
        "model as the checkpoint's was built, or use weights saved from this model"
    )


class DetNASCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer that maps DetNAS body weights to this model (classifier -> detector, supernet -> fixed).

    Checkpoints loaded through detectron2's name-matching heuristics (model-zoo .pkl files) are left to it.
    """

    def save(self, name: str, **kwargs: Any) -> None:
        """fvcore's ``save`` (model, checkpointables and ``kwargs`` to ``<save_dir>/<name>.pth``, then
        ``last_checkpoint``), each file written atomically."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict(), **{k: obj.state_dict() for k, obj in self.checkpointables.items()}}
        buffer = io.BytesIO()
        torch.save({**data, **kwargs}, buffer)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        atomic_write(save_file, buffer.getbuffer())
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Point ``last_checkpoint`` at ``last_filename_basename`` (atomically)."""
        atomic_write(os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename)

    def load(self, path, *args, **kwargs):
        if os.path.isdir(path):
            raise CheckpointFileError(
                f"checkpoint {path} is a directory, not a checkpoint file: MODEL.WEIGHTS (or a resumed checkpoint) "
                f"must name a .pth or .pkl file{_final_hint(path)}"
            )
        self._loading = path
        try:
            return super().load(path, *args, **kwargs)
        finally:
            self._parsed_url_during_load = None  # detectron2 leaves it set when loading fails

    def _load_file(self, filename):
        try:
            loaded = super()._load_file(filename)
        except Exception as err:  # torch.load / pickle raise many types on damaged or foreign files
            raise _unreadable(filename, f"{type(err).__name__}: {err}") from err
        _check_checkpoint_content(filename, loaded)
        return loaded

    def _load_model(self, checkpoint: Dict[str, Any]):
        if not checkpoint.get("matching_heuristics", False):
            mapping = map_detnas_weights(checkpoint["model"], self.model)
            if mapping.changed:
                self._log_mapping(mapping)
            checkpoint["model"] = mapping.state_dict
            _strip_prefix_if_present(checkpoint["model"], "module.")
            mismatches = backbone_shape_mismatches(checkpoint["model"], self.model)
            if mismatches:
                raise _shape_error(getattr(self, "_loading", "?"), mismatches)
        return super()._load_model(checkpoint)

    def resume_candidates(self) -> List[str]:
        """The checkpoint named by ``last_checkpoint``, then the folder's periodic checkpoints, newest first."""
        last = self.get_checkpoint_file()
        numbered = [
            (int(m.group(1)), name)
            for name in os.listdir(self.save_dir or ".")
            for m in [_PERIODIC_CHECKPOINT.match(name)]
            if m
        ]
        older = [os.path.join(self.save_dir, name) for _, name in sorted(numbered, reverse=True)]
        return [last] + [path for path in older if path != last]

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        """detectron2's resume_or_load; an unreadable last checkpoint falls back to the previous readable one."""
        if not (resume and self.has_checkpoint()):
            return self.load(path, checkpointables=[])
        candidates = self.resume_candidates()
        for i, candidate in enumerate(candidates):
            try:
                if not os.path.isfile(candidate):
                    raise _unreadable(candidate, "the file does not exist")
                return self.load(candidate)
            except CheckpointFileError as err:
                fallback = candidates[i + 1] if i + 1 < len(candidates) else None
                if fallback is None:
                    raise CheckpointFileError(
                        f"no readable checkpoint to resume from in {self.save_dir} (tried "
                        f"{', '.join(candidates)}); last error: {err}"
                    ) from err
                self.logger.warning(
                    f"[DetNASCheckpointer] {err}\nResuming from the previous checkpoint {fallback} instead"
                )

    def _log_mapping(self, mapping: DetNASWeightMapping) -> None:
        if mapping.source_prefix != mapping.target_prefix:
            self.logger.info(
                f"[DetNASCheckpointer] DetNAS body weights '{mapping.source_prefix}*' loaded into "
                f"'{mapping.target_prefix}*'"
            )
        if mapping.dropped_head_keys:
            self.logger.info(
                f"[DetNASCheckpointer] dropped {len(mapping.dropped_head_keys)} classification-head "
                f"tensors unused by {type(self.model).__name__}: {', '.join(mapping.dropped_head_keys)}"
            )
        if mapping.dropped_candidate_keys:
            arch = _model_backbone(self.model)[1].body.resolved_arch
            self.logger.info(
                f"[DetNASCheckpointer] supernet weights reduced to the fixed architecture {arch}: "
                f"{len(mapping.dropped_candidate_keys)} tensors of other candidates not loaded"
            )
