"""The DetNAS backbone as a searchable part: a ShuffleNetV2 supernet searched by weight sharing."""

from ..cost import BackboneCostModel
from ..modeling.detnas_backbone import DetNASBackbone
from ..modeling.weight_inheritance import extract_subnet_state_dict
from ..space.backbone import BackboneSearchSpace, format_architecture
from .base import SEARCHABLE_PART_REGISTRY, SearchablePart, find_single
from .latency import build_latency_cost


@SEARCHABLE_PART_REGISTRY.register()
class BackbonePart(SearchablePart):
    """``MODEL.DETNAS.ARCH``: one choice block per position; costs are the backbone's FLOPs, parameters, latency."""

    name = "backbone"
    evaluators = ("one_shot",)
    description = "DetNAS backbone"

    def find(self, model):
        return find_single(model, DetNASBackbone, self.name)

    def model_space(self, module):
        return BackboneSearchSpace(module.body.space)

    def config_values(self, arch):
        return {"MODEL.DETNAS.ARCH": format_architecture(arch)}

    def inherited_weights(self, state, arch):
        return extract_subnet_state_dict(state, arch)

    @staticmethod
    def cost_model(module) -> BackboneCostModel:
        """The analytical cost model of the supernet ``module`` (224x224, ImageNet head)."""
        body = module.body
        return BackboneCostModel(space=body.space, layout=body.layout, style=body.style)

    def cost_fns(self, cfg, module):
        """ "params" (stem + blocks); "flops" with ``SEARCH.FLOPS_MODE`` "backbone" (the spec's counter at 224x224,
        analytical); "latency" with ``SEARCH.LATENCY.MODE`` "measure" or "lut" (fixed-subnet milliseconds)."""
        table = self.cost_model(module)
        costs = {"params": table.params}
        if cfg.SEARCH.FLOPS_MODE == "backbone":
            costs["flops"] = table.flops
        if cfg.SEARCH.LATENCY.MODE != "off":
            costs["latency"] = build_latency_cost(cfg, module.body)
        return costs

    def cost_range(self, cfg, module):
        if cfg.SEARCH.FLOPS_MODE != "backbone":
            return None
        table = self.cost_model(module)

        def bounds(name):
            return table.bounds(name) if name in ("flops", "params") else None

        return bounds
