"""The detection AutoAugment policy as a searchable part: scored by proxy training only (no supernet holds it)."""

from ..data.autoaugment import AutoAugmentPolicySpace
from ..data.mappers import AUTOAUGMENT_MAPPER_NAME, DEFAULT_MAPPER_NAME
from .base import SEARCHABLE_PART_REGISTRY, SearchablePart


@SEARCHABLE_PART_REGISTRY.register()
class AutoAugmentPart(SearchablePart):
    """``INPUT.AUTOAUGMENT.CUSTOM_POLICY``: K sub-policies of N ops; a policy does not change the detector."""

    name = "autoaug"
    evaluators = ("proxy",)
    description = "AutoAugment policy"
    changes_detector = False

    def config_space(self, cfg):
        return AutoAugmentPolicySpace(
            num_sub_policies=cfg.SEARCH.AUTOAUG.NUM_SUB_POLICIES,
            ops_per_sub_policy=cfg.SEARCH.AUTOAUG.OPS_PER_SUB_POLICY,
        )

    def config_values(self, arch):
        """AutoAugment on, ``INPUT.AUTOAUGMENT.CUSTOM_POLICY`` = the policy (``arch`` canonical, as validated)."""
        return {
            "INPUT.AUTOAUGMENT.ENABLED": True,
            "INPUT.AUTOAUGMENT.CUSTOM_POLICY": [[list(op) for op in sub] for sub in arch],
        }

    def write_config(self, cfg, arch):
        if cfg.DATALOADER.MAPPER_NAME not in (DEFAULT_MAPPER_NAME, AUTOAUGMENT_MAPPER_NAME):
            raise ValueError(
                f"cfg.DATALOADER.MAPPER_NAME = {cfg.DATALOADER.MAPPER_NAME!r} would ignore the searched policy; "
                f"an AutoAugment search needs {DEFAULT_MAPPER_NAME!r} or {AUTOAUGMENT_MAPPER_NAME!r}"
            )
        super().write_config(cfg, arch)
