"""The one-shot (searchable) parts of a built model and the search space they span.

A detector may hold a DetNAS supernet backbone (part ``"backbone"``), a one-shot NAS-FPN neck (part ``"neck"``),
or both. With one part, an architecture is that part's own encoding (a list); with both, it is a dict
``{"backbone": ..., "neck": ...}`` over a :class:`~detnas_d2.space.joint.JointSpace`.
"""
from typing import Dict

from torch import nn

from ..cost import BackboneCostModel
from ..space.backbone import BackboneSearchSpace
from ..space.base import SearchSpace
from ..space.joint import JointSpace
from ..space.neck import NeckSearchSpace
from .detnas_backbone import DetNASBackbone
from .neck import NASFPN


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


def searchable_parts(model: nn.Module) -> Dict[str, nn.Module]:
    """``{"backbone": DetNASBackbone, "neck": NASFPN}`` for the one-shot parts present in ``model``."""
    parts = {}
    for module in unwrap(model).modules():
        if isinstance(module, DetNASBackbone) and module.is_supernet:
            name = "backbone"
        elif isinstance(module, NASFPN) and module.is_supernet:
            name = "neck"
        else:
            continue
        if name in parts:
            raise ValueError(f"the model holds more than one one-shot {name}; only one of each is supported")
        parts[name] = module
    return parts


def part_space(name: str, part: nn.Module) -> SearchSpace:
    """The search space of one one-shot part."""
    if name == "backbone":
        return BackboneSearchSpace(part.body.space)
    return NeckSearchSpace(part.nasfpn.num_cells)


def model_search_space(model: nn.Module) -> SearchSpace:
    """The search space of all one-shot parts of ``model`` (a single part's space, or a joint one)."""
    parts = searchable_parts(model)
    if not parts:
        raise ValueError("the model has no one-shot part (set MODEL.DETNAS.ARCH to '' or MODEL.NASFPN.ONE_SHOT True)")
    spaces = {name: part_space(name, part) for name, part in parts.items()}
    return next(iter(spaces.values())) if len(spaces) == 1 else JointSpace(spaces)


def set_model_arch(model: nn.Module, arch) -> None:
    """Select ``arch`` (in the form :func:`model_search_space` produces) on the model's one-shot parts."""
    parts = searchable_parts(model)
    if len(parts) == 1:
        next(iter(parts.values())).set_arch(arch)
        return
    if not isinstance(arch, dict) or set(arch) != set(parts):
        raise ValueError(f"this model has one-shot parts {sorted(parts)}; pass a dict with exactly those keys")
    for name, part in parts.items():
        part.set_arch(arch[name])


def backbone_arch(model: nn.Module, arch):
    """The backbone part of a model-level architecture (``None`` if the model has no one-shot backbone)."""
    parts = searchable_parts(model)
    if "backbone" not in parts:
        return None
    return arch["backbone"] if len(parts) > 1 else arch


def backbone_cost_model(model: nn.Module) -> BackboneCostModel:
    """The analytical cost model matching the model's one-shot DetNAS backbone (224x224, ImageNet head)."""
    body = searchable_parts(model)["backbone"].body
    return BackboneCostModel(space=body.space, layout=body.layout, style=body.style)
