"""BatchNorm recalibration for one-shot candidates (DetNAS / SPOS search: megvii-model/DetNAS,
megvii-model/SinglePathOneShot).

A supernet's running statistics mix all paths; before a candidate path is evaluated its BN statistics are reset
and re-estimated with train-mode forward passes (no gradient) on training data. Two estimators:
``cumulative`` (exact average of per-batch statistics, recommended) and ``ema`` (exponential moving average with
a given momentum, as the DetNAS reference code did).
"""

import itertools
from typing import Iterable

import torch
from torch import nn

RECALIB_MODES = ("cumulative", "ema")


def batchnorm_modules(model: nn.Module):
    """All BatchNorm layers (plain and synchronised) of ``model``."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def reset_bn_stats(model: nn.Module) -> int:
    """Reset running mean/var (to 0/1) and batch counters of every BN layer; return how many were reset."""
    layers = batchnorm_modules(model)
    for bn in layers:
        if bn.track_running_stats:
            bn.reset_running_stats()
    return len(layers)


def convert_sync_bn_to_bn(module: nn.Module) -> nn.Module:
    """Replace ``SyncBatchNorm`` layers by plain ``BatchNorm2d`` with the same parameters and statistics.

    Used when each process evaluates its own candidate: a synchronised layer would wait for the others.
    """
    converted = module
    if isinstance(module, nn.SyncBatchNorm) or (
        isinstance(module, nn.BatchNorm2d) and type(module) is not nn.BatchNorm2d
    ):
        converted = nn.BatchNorm2d(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        converted.load_state_dict(module.state_dict())
        converted.train(module.training)
    for name, child in module.named_children():
        converted.add_module(name, convert_sync_bn_to_bn(child))
    return converted


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module, batches: Iterable, num_batches: int, mode: str = "cumulative", momentum: float = 0.1
) -> int:
    """Reset BN statistics, then run ``num_batches`` train-mode forwards of ``model`` over ``batches``.

    Returns the number of batches used. The model's train/eval state and BN momenta are restored afterwards.
    Weights never change: there is no backward pass and no optimizer.
    """
    if mode not in RECALIB_MODES:
        raise ValueError(f"BN recalibration mode must be one of {RECALIB_MODES}, got {mode!r}")
    if num_batches < 1:
        raise ValueError(f"BN recalibration needs num_batches >= 1, got {num_batches}")
    layers = batchnorm_modules(model)
    saved_momenta = [bn.momentum for bn in layers]
    was_training = model.training
    reset_bn_stats(model)
    for bn in layers:
        bn.momentum = None if mode == "cumulative" else momentum
    model.train()
    used = 0
    try:
        for batch in itertools.islice(batches, num_batches):
            model(batch)
            used += 1
    finally:
        for bn, m in zip(layers, saved_momenta):
            bn.momentum = m
        model.train(was_training)
    if used < num_batches:
        raise ValueError(f"BN recalibration asked for {num_batches} batches but the data gave only {used}")
    return used
