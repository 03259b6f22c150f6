"""Config keys of training: path sampling and the evaluation of one-shot models (``SUPERNET.*``), and the
"not learning" alarm (``TRAIN_ALARM.*``), with their validation."""

from detectron2.config import CfgNode as CN

from ..utils.config import declare


def add_engine_config(cfg: CN) -> CN:
    """Declare every training key of the package (``SUPERNET.*``, ``TRAIN_ALARM.*``); idempotent."""
    add_supernet_config(cfg)
    add_train_alarm_config(cfg)
    return cfg


def add_supernet_config(cfg: CN) -> CN:
    """Declare ``SUPERNET.*``: path sampling during training and the evaluation of one-shot models."""
    declare(cfg, "SUPERNET", CN())
    node = cfg.SUPERNET
    declare(node, "SEED", 0)  # seed of the path generator (independent of SEED, which drives data and init)
    # path sampler (engine/path_sampling.py's registry): "uniform" per block, "flops_binned" (the DetNAS ImageNet
    # sampler of megvii-model/DetNAS: a uniform FLOPs bin, then a path inside it), or "fair" (FairNAS: every
    # candidate of every position once in each block of 4 consecutive steps)
    declare(node, "SAMPLER", "uniform")
    declare(node, "FLOPS_BINS", CN())
    declare(node.FLOPS_BINS, "RANGE", (290e6, 360e6))  # FLOPs range split into bins (multiply-adds at 224)
    declare(node.FLOPS_BINS, "NUM_BINS", 7)  # number of equal-width bins over RANGE
    declare(node.FLOPS_BINS, "MAX_TRIES", 500)  # uniform draws per step to hit the chosen bin, then give up
    declare(node.FLOPS_BINS, "INCLUDE_CLASSIFIER", True)  # count the full classifier (as DetNAS) or backbone only
    # append every step's path to OUTPUT_DIR/paths_rank<r>.jsonl (a resumed run drops the entries it repeats)
    declare(node, "LOG_PATHS", False)
    declare(node, "EVAL", CN())
    evaluation = node.EVAL
    declare(evaluation, "NUM_PATHS", 5)  # random paths scored when a supernet is evaluated (mean AP is reported)
    declare(evaluation, "SEED", 1)  # seed of those paths (the same paths at every evaluation)
    # evaluating a fixed MODEL.DETNAS.ARCH with supernet weights (--eval-only): recalibrate BN first, with the
    # SUPERNET.EVAL.BN_RECALIB settings (set them as the search's SEARCH.BN_RECALIB / SEARCH.SEED to get the AP the
    # search reported for that architecture)
    declare(evaluation, "RECALIBRATE_FIXED", False)
    declare(evaluation, "BN_RECALIB", CN())
    recalib = evaluation.BN_RECALIB
    # train-mode forward passes re-estimating BN statistics per evaluated path; 0 = no recalibration
    declare(recalib, "NUM_BATCHES", 500)
    declare(recalib, "BATCH_SIZE", 8)  # images per recalibration iteration over all GPUs
    declare(recalib, "MODE", "cumulative")  # "cumulative" (exact average of batch statistics) or "ema"
    declare(recalib, "MOMENTUM", 0.1)  # BN momentum used when MODE == "ema" (PyTorch convention)
    declare(recalib, "SEED", 0)  # seed of the recalibration images and their augmentation (the same for every path)
    return cfg


def add_train_alarm_config(cfg: CN) -> CN:
    """Declare ``TRAIN_ALARM.*``, the "not learning" warning after warm-up."""
    declare(cfg, "TRAIN_ALARM", CN())
    node = cfg.TRAIN_ALARM
    declare(node, "ENABLED", True)  # check the training loss after warm-up (warn, never stop the run)
    declare(node, "START_ITER", -1)  # first iteration checked; -1 = 2 x SOLVER.WARMUP_ITERS (at least WINDOW)
    declare(node, "WINDOW", 20)  # iterations whose median loss is compared
    declare(node, "MIN_DROP", 0.95)  # alarm while median loss >= MIN_DROP x the highest median before START_ITER
    # ... at every one of PATIENCE consecutive checked iterations (a warm-up overshoot that falls back is no alarm)
    declare(node, "PATIENCE", 100)
    return cfg


def check_supernet_eval_config(cfg) -> None:
    """``SUPERNET.EVAL.NUM_PATHS`` must be a whole number >= 1."""
    num_paths = cfg.SUPERNET.EVAL.NUM_PATHS
    if isinstance(num_paths, bool) or not isinstance(num_paths, int) or num_paths < 1:
        raise ValueError(
            f"SUPERNET.EVAL.NUM_PATHS = {num_paths!r}: a supernet is evaluated on that many random "
            "paths; it must be an integer >= 1"
        )


def check_solver_config(cfg) -> None:
    """``SOLVER.MAX_ITER`` (detectron2's key) must be a whole number >= 1 for a training (fvcore's scheduler would
    only say "Total num_updates must be greater than length of param schedule")."""
    max_iter = cfg.SOLVER.MAX_ITER
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(
            f"SOLVER.MAX_ITER = {max_iter!r}: a training runs that many iterations; it must be an integer >= 1 "
            "(to evaluate weights without training, use --eval-only)"
        )
