"""Path samplers of supernet training come from a registry named by SUPERNET.SAMPLER: an unknown name is an error
listing the registered ones, and "flops_binned" draws paths from every FLOPs bin, each inside its bin."""

import random

import pytest
from detectron2.config import get_cfg

import detnas_d2  # noqa: F401
from detnas_d2.config import add_detnas_config
from detnas_d2.engine import Trainer
from detnas_d2.engine.path_sampling import PATH_SAMPLER_REGISTRY, PathSamplingHook
from presets import SUPERNET_CONFIG


def _hook(*opts):
    cfg = add_detnas_config(get_cfg())
    cfg.merge_from_file(SUPERNET_CONFIG)
    cfg.merge_from_list(["MODEL.DETNAS.WIDTH_MULT", "0.25", "MODEL.DEVICE", "cpu", *opts])
    return PathSamplingHook(cfg, Trainer.build_model(cfg))


def test_registered_samplers_and_unknown_name_error():
    assert {"uniform", "flops_binned"} <= {name for name, _ in PATH_SAMPLER_REGISTRY}
    with pytest.raises(ValueError, match=r"SUPERNET.SAMPLER must be one of .*'uniform'.*'flops_binned'.*'nope'"):
        _hook("SUPERNET.SAMPLER", "nope")


def _bin_counts(hook, low, high, num_bins, draws=60):
    """How many of ``draws`` sampled paths fall in each of ``num_bins`` equal FLOPs bins over [low, high]."""
    rng, counts = random.Random(0), [0] * num_bins
    for _ in range(draws):
        flops = hook.cost_model.flops(hook.backbone_arch(hook.draw(rng)))
        assert low <= flops <= high
        counts[min(int((flops - low) / (high - low) * num_bins), num_bins - 1)] += 1
    return counts


def test_flops_binned_draws_every_bin_where_uniform_misses_the_extremes():
    uniform = _hook()
    assert uniform.draw == uniform.space.sample
    low, high = uniform.cost_model.bounds("flops", include_classifier=False)
    binned = _hook(
        "SUPERNET.SAMPLER",
        "flops_binned",
        "SUPERNET.FLOPS_BINS.INCLUDE_CLASSIFIER",
        "False",
        "SUPERNET.FLOPS_BINS.RANGE",
        f"({low}, {high + 1})",
        "SUPERNET.FLOPS_BINS.NUM_BINS",
        "4",
    )
    counts = _bin_counts(binned, low, high, 4)
    assert all(count >= 6 for count in counts), counts  # about 15 each
    uniform_counts = _bin_counts(uniform, low, high, 4)
    assert uniform_counts[0] + uniform_counts[3] < 6, uniform_counts  # the sum over 20 blocks sits in the middle


def test_fair_runs_every_candidate_of_every_position_once_per_block_and_resumes_mid_block():
    hook = _hook("SUPERNET.SAMPLER", "fair")
    rng = random.Random(0)
    paths = [hook.draw(rng) for _ in range(8)]
    for block in (paths[:4], paths[4:]):
        assert all(sorted(arch[pos] for arch in block) == [0, 1, 2, 3] for pos in range(20))
    assert paths[:4] != paths[4:]
    # a checkpoint taken after 2 steps continues the block exactly
    hook.rng = random.Random(0)
    hook.draw = PATH_SAMPLER_REGISTRY.get("fair")(hook)
    first = [hook.draw(hook.rng) for _ in range(2)]
    state = hook.state_dict()
    resumed = _hook("SUPERNET.SAMPLER", "fair")
    resumed.load_state_dict(state)
    assert first + [resumed.draw(resumed.rng) for _ in range(6)] == paths
