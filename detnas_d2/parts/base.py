"""The searchable-part protocol and its registry; ``SEARCH.SPACE`` names registered parts.

A part is small on purpose (mmrazor's mutable/mutator split in spirit): the part object holds the knowledge
about one kind of searchable thing, the model holds the module (a one-shot supernet part), and the search code
only talks to this interface.
"""

from functools import reduce
from typing import Any, Callable, Dict, List, Tuple

from detectron2.utils.registry import Registry
from torch import nn

from ..space.base import SearchSpace

SEARCHABLE_PART_REGISTRY = Registry("SEARCHABLE_PART")
SEARCHABLE_PART_REGISTRY.__doc__ = """Searchable parts (subclasses of SearchablePart), looked up by their ``name``."""

CostFn = Callable[[Any], float]


class SearchablePart:
    """One kind of searchable thing (a backbone, a neck, an augmentation policy); stateless.

    ``evaluators`` says how its candidates can be scored: "one_shot" (as paths of a trained supernet the model
    holds) and/or "proxy" (each candidate trained briefly on the proxy task).
    """

    #: the part's name in ``SEARCH.SPACE`` and the key of its architecture in a joint architecture
    name = ""
    evaluators: Tuple[str, ...] = ()
    #: what the part is, for messages ("NAS-FPN neck")
    description = ""
    #: a candidate builds another detector, so a proxy search counts the detector's FLOPs
    changes_detector = True

    def find(self, model: nn.Module) -> nn.Module | None:
        """The model's module of this part (fixed or one-shot), None if it has none."""
        return None

    def is_one_shot(self, module: nn.Module) -> bool:
        """True if ``module`` is a supernet whose path :meth:`set_arch` selects."""
        return bool(getattr(module, "is_supernet", False))

    def model_space(self, module: nn.Module) -> SearchSpace:
        """The search space of a one-shot ``module``."""
        raise NotImplementedError(f"part {self.name!r} has no one-shot module")

    def config_space(self, cfg) -> SearchSpace:
        """The search space of a proxy search, sized by the config."""
        raise NotImplementedError(f"part {self.name!r} cannot be searched by proxy")

    def set_arch(self, module: nn.Module, arch) -> None:
        """Select ``arch`` on a one-shot ``module``."""
        module.set_arch(arch)

    def config_values(self, arch) -> Dict[str, Any]:
        """``{"A.B.KEY": value}``: the config keys that build ``arch`` as a fixed part."""
        raise NotImplementedError

    def write_config(self, cfg, arch) -> None:
        """Write ``arch`` as a fixed part into the mutable ``cfg``."""
        for key, value in self.config_values(arch).items():
            *path, leaf = key.split(".")
            setattr(reduce(getattr, path, cfg), leaf, value)

    def inherited_weights(self, state: Dict[str, Any], arch) -> Dict[str, Any]:
        """The fixed network's ``state`` cut from a supernet ``state`` on ``arch``'s path (default: all of it)."""
        return state

    def cost_fns(self, cfg, module: nn.Module) -> Dict[str, CostFn]:
        """The part's own costs of one of its architectures, by name (e.g. "params"), per ``cfg.SEARCH``."""
        return {}

    def cost_range(self, cfg, module: nn.Module) -> Callable[[str], Any] | None:
        """``name -> (low, high)`` bounds of the part's costs when it is searched alone, or None if unknown."""
        return None


def find_single(model: nn.Module, module_type: type, name: str) -> nn.Module | None:
    """The one ``module_type`` module inside ``model`` (None if it has none); several are an error."""
    found = [module for module in model.modules() if isinstance(module, module_type)]
    if len(found) > 1:
        raise ValueError(f"the model holds {len(found)} {module_type.__name__} modules; only one {name} is supported")
    return found[0] if found else None


def part_archs(names, arch) -> Dict[str, Any]:
    """``{part name: its architecture}`` from an architecture over the parts ``names`` (a dict when several)."""
    return dict(arch) if len(names) > 1 else {next(iter(names)): arch}


def _parts() -> Dict[str, SearchablePart]:
    """Every registered part by name."""
    return {cls.name: cls() for _, cls in sorted(SEARCHABLE_PART_REGISTRY)}


def part_names() -> List[str]:
    """The registered part names, sorted."""
    return sorted(_parts())


def get_part(name: str) -> SearchablePart:
    """The registered part ``name``."""
    parts = _parts()
    if name not in parts:
        raise KeyError(f"no searchable part named {name!r}; registered: {sorted(parts)}")
    return parts[name]


def parse_space(value: str) -> List[str]:
    """The part names of a ``SEARCH.SPACE`` value ("backbone", "backbone,neck,autoaug"; "" = none named)."""
    if not isinstance(value, str):
        raise ValueError(
            f"cfg.SEARCH.SPACE = {value!r} is invalid: must be a string of comma-separated part names "
            f"from {part_names()}, or ''"
        )
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in _parts()]
    if unknown or len(set(names)) != len(names):
        raise ValueError(
            f"cfg.SEARCH.SPACE = {value!r} is invalid: must be comma-separated part names from "
            f"{part_names()} (each at most once), or '' for every one-shot part of the model"
        )
    return names
