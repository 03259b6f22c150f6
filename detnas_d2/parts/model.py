"""The one-shot (searchable) parts of a built model and the search space they span.

A detector may hold several one-shot parts (see :mod:`detnas_d2.parts`: a DetNAS supernet backbone ``"backbone"``,
a one-shot NAS-FPN neck ``"neck"``). With one part, an architecture is that part's own encoding (a list); with
several, it is a dict ``{"backbone": ..., "neck": ...}`` over a :class:`~detnas_d2.space.joint.JointSpace`.
"""

from typing import Dict

from torch import nn

from ..space.base import SearchSpace
from ..space.joint import JointSpace
from .base import SEARCHABLE_PART_REGISTRY, get_part, part_archs


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


def searchable_parts(model: nn.Module) -> Dict[str, nn.Module]:
    """``{part name: one-shot module}`` for the registered parts the model holds as supernets."""
    parts = {}
    for _, part_type in sorted(SEARCHABLE_PART_REGISTRY):
        part = part_type()
        module = part.find(unwrap(model))
        if module is not None and part.is_one_shot(module):
            parts[part.name] = module
    return parts


def part_space(name: str, part: nn.Module) -> SearchSpace:
    """The search space of the one-shot module ``part`` of part ``name``."""
    return get_part(name).model_space(part)


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
    if len(parts) != 1 and (not isinstance(arch, dict) or set(arch) != set(parts)):
        raise ValueError(f"this model has one-shot parts {sorted(parts)}; pass a dict with exactly those keys")
    for name, part_arch in part_archs(parts, arch).items():
        get_part(name).set_arch(parts[name], part_arch)
