"""The NAS-FPN neck as a searchable part: a one-shot neck supernet, or fixed necks trained by proxy."""

from ..modeling.neck import NASFPN
from ..space.neck import NeckSearchSpace, format_compact_neck_arch
from .base import SEARCHABLE_PART_REGISTRY, SearchablePart, find_single


@SEARCHABLE_PART_REGISTRY.register()
class NeckPart(SearchablePart):
    """``MODEL.NASFPN.ARCH``: the merging cells of one NAS-FPN block; its cost is the whole detector's FLOPs."""

    name = "neck"
    evaluators = ("one_shot", "proxy")
    description = "NAS-FPN neck"

    def find(self, model):
        return find_single(model, NASFPN, self.name)

    def model_space(self, module):
        return NeckSearchSpace(module.nasfpn.num_cells)

    def config_space(self, cfg):
        return NeckSearchSpace(num_cells=cfg.SEARCH.NECK.NUM_CELLS)

    def config_values(self, arch):
        return {"MODEL.NASFPN.ARCH": format_compact_neck_arch(arch), "MODEL.NASFPN.ONE_SHOT": False}
