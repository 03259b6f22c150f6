"""Cost models: FLOPs (multiply-adds) and parameter counts of candidate architectures."""

from .flops import (
    BackboneCostModel,
    Cost,
    backbone_flops,
    detector_flops,
    fvcore_conv_linear_flops,
)

__all__ = ["BackboneCostModel", "Cost", "backbone_flops", "detector_flops", "fvcore_conv_linear_flops"]
