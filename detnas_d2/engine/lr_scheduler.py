"""LR schedules: detectron2's, plus "WarmupLinearLR" (linear decay to SOLVER.BASE_LR_END, the SPOS/DetNAS
ImageNet supernet schedule: LR 0.5 falling linearly to 0 over all iterations, the reference code's default)."""

from detectron2.config import CfgNode
from detectron2.solver import LRMultiplier, WarmupParamScheduler
from detectron2.solver import build_lr_scheduler as build_detectron2_lr_scheduler
from fvcore.common.param_scheduler import LinearParamScheduler

__all__ = ["LINEAR_SCHEDULER_NAME", "build_lr_scheduler"]

LINEAR_SCHEDULER_NAME = "WarmupLinearLR"


def build_lr_scheduler(cfg: CfgNode, optimizer):
    """The scheduler named by SOLVER.LR_SCHEDULER_NAME; every name but "WarmupLinearLR" goes to detectron2.

    "WarmupLinearLR": multiplier 1 -> BASE_LR_END / BASE_LR, linear in the iteration over MAX_ITER, with
    detectron2's warm-up (WARMUP_ITERS / WARMUP_FACTOR / WARMUP_METHOD / RESCALE_INTERVAL) in front.
    """
    solver = cfg.SOLVER
    if solver.LR_SCHEDULER_NAME != LINEAR_SCHEDULER_NAME:
        return build_detectron2_lr_scheduler(cfg, optimizer)
    end_value = solver.BASE_LR_END / solver.BASE_LR
    if not 0.0 <= end_value <= 1.0:
        raise ValueError(
            f"{LINEAR_SCHEDULER_NAME} needs 0 <= SOLVER.BASE_LR_END <= SOLVER.BASE_LR, "
            f"got BASE_LR_END={solver.BASE_LR_END}, BASE_LR={solver.BASE_LR}"
        )
    schedule = WarmupParamScheduler(
        LinearParamScheduler(1.0, end_value),
        solver.WARMUP_FACTOR,
        min(solver.WARMUP_ITERS / solver.MAX_ITER, 1.0),
        solver.WARMUP_METHOD,
        solver.RESCALE_INTERVAL,
    )
    return LRMultiplier(optimizer, multiplier=schedule, max_iter=solver.MAX_ITER)
