"""Single-path one-shot training: a hook that selects one path of the supernet before every step.

Rank 0 draws the path (uniform per block, FLOPs-binned as the DetNAS ImageNet sampler did, or fair: each
candidate once per block of steps) from its own seeded generator and broadcasts it, so every rank trains the same
path (required anyway by SyncBN inside the sampled ops). The generator's state (and a sampler's own, where it has
one) is part of detectron2 checkpoints: ``--resume`` continues the same path sequence.
"""

import json
import logging
import os
import random
from typing import Callable, Mapping, Sequence

import torch.distributed as dist
from detectron2.config import configurable
from detectron2.engine import HookBase
from detectron2.utils import comm
from detectron2.utils.registry import Registry

from ..parts import get_part, part_archs
from ..parts.model import model_search_space, searchable_parts, set_model_arch
from ..space.backbone import NUM_CHOICES
from ..space.base import SearchSpace
from ..utils.io import atomic_write

PATH_SAMPLER_REGISTRY = Registry("PATH_SAMPLER")
PATH_SAMPLER_REGISTRY.__doc__ = """Path samplers of supernet training, named by ``SUPERNET.SAMPLER``: ``fn(hook)``
returns ``draw(rng) -> arch`` over ``hook.space`` (a function named like the config value; its settings are the
hook's attributes, e.g. ``hook.flops_bins``)."""

#: ``SUPERNET.FLOPS_BINS`` as plain arguments (lower-case keys), the defaults of ``PathSamplingHook(flops_bins=...)``
DEFAULT_FLOPS_BINS = {"range": (290e6, 360e6), "num_bins": 7, "max_tries": 500, "include_classifier": True}


def truncate_path_log(path: str, start_iter: int) -> None:
    """Keep the entries of ``path`` for iterations before ``start_iter`` (a resumed run logs the rest again);
    a line torn by a kill is dropped."""
    if not os.path.isfile(path):
        return
    kept = []
    with open(path) as f:
        for line in f:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("iter"), int) and entry["iter"] < start_iter:
                kept.append(json.dumps(entry) + "\n")
    atomic_write(path, "".join(kept))


def _flops_bins(flops_bins: Mapping | None) -> dict:
    """:data:`DEFAULT_FLOPS_BINS` updated with ``flops_bins``; an unknown key is an error naming the allowed ones."""
    given = dict(flops_bins or {})
    unknown = sorted(set(given) - set(DEFAULT_FLOPS_BINS))
    if unknown:
        raise ValueError(f"flops_bins keys {unknown} unknown; allowed: {sorted(DEFAULT_FLOPS_BINS)}")
    return {**DEFAULT_FLOPS_BINS, **given}


class FlopsBinnedSampler:
    """Pick one of ``num_bins`` FLOPs bins uniformly, then the first of up to ``max_tries`` uniform paths in it.

    Falls back to an unconstrained uniform path when no draw lands in the bin (megvii-model/DetNAS ImageNet
    supernet code). Flattens the FLOPs distribution of the paths that get trained.
    """

    def __init__(
        self, space: SearchSpace, flops_fn: Callable, flops_range: Sequence[float], num_bins: int, max_tries: int
    ):
        lo, hi = float(flops_range[0]), float(flops_range[1])
        if not (0 <= lo < hi):
            raise ValueError(f"SUPERNET.FLOPS_BINS.RANGE must be (low, high) with 0 <= low < high, got {flops_range}")
        if num_bins < 1 or max_tries < 1:
            raise ValueError(f"SUPERNET.FLOPS_BINS needs NUM_BINS >= 1 and MAX_TRIES >= 1, got {num_bins}, {max_tries}")
        self.space, self.flops_fn = space, flops_fn
        self.edges = [lo + (hi - lo) * i / num_bins for i in range(num_bins + 1)]
        self.max_tries = max_tries

    def __call__(self, rng: random.Random):
        b = rng.randrange(len(self.edges) - 1)
        low, high = self.edges[b], self.edges[b + 1]
        for _ in range(self.max_tries):
            arch = self.space.sample(rng)
            if low <= self.flops_fn(arch) < high:
                return arch
        return self.space.sample(rng)


class FairSampler:
    """FairNAS's strict fairness (Chu et al., ICCV 2021) spread over consecutive steps: in every block of
    ``num_choices`` steps each position runs each of its candidates exactly once (an independent random
    permutation per position). FairNAS accumulates the block's gradients into one update; here each step updates,
    so the cost per step stays that of one path. The unfinished block is part of the checkpointed state."""

    def __init__(self, num_blocks: int, num_choices: int):
        self.num_blocks, self.num_choices = num_blocks, num_choices
        self.pending: list = []

    def __call__(self, rng: random.Random):
        if not self.pending:
            perms = [rng.sample(range(self.num_choices), self.num_choices) for _ in range(self.num_blocks)]
            self.pending = [[perm[step] for perm in perms] for step in range(self.num_choices)]
        return self.pending.pop(0)

    def state_dict(self):
        return {"pending": [list(arch) for arch in self.pending]}

    def load_state_dict(self, state_dict):
        self.pending = [list(arch) for arch in state_dict["pending"]]


class PathSamplingHook(HookBase):
    """Before every step, set one path on all one-shot parts of the model, identical on every rank.

    Built from ``SUPERNET.*`` (``PathSamplingHook(cfg, model)``) or from plain arguments (``PathSamplingHook(model,
    seed=0, sampler="uniform", flops_bins=None, log_dir=None)``, e.g. ``L(PathSamplingHook)(...)`` in a LazyConfig):
    ``flops_bins`` overrides :data:`DEFAULT_FLOPS_BINS`; ``log_dir`` set = log every path to
    ``log_dir/paths_rank<r>.jsonl``.
    """

    @configurable
    def __init__(
        self,
        model,
        *,
        seed: int = 0,
        sampler: str = "uniform",
        flops_bins: Mapping | None = None,
        log_dir: str | None = None,
    ):
        self.space = model_search_space(model)
        self.model = model
        self.rng = random.Random(seed)
        self.parts = searchable_parts(model)
        self.cost_model = get_part("backbone").cost_model(self.parts["backbone"]) if "backbone" in self.parts else None
        self.flops_bins = _flops_bins(flops_bins)
        self.draw = self._build_sampler(sampler)
        self.log_file: str | None = None
        if log_dir:
            os.makedirs(log_dir, exist_ok=True)
            self.log_file = os.path.join(log_dir, f"paths_rank{comm.get_rank()}.jsonl")
        self.current = None

    @classmethod
    def from_config(cls, cfg, model):
        """The arguments ``SUPERNET.SEED / SAMPLER / FLOPS_BINS / LOG_PATHS`` give (paths logged to OUTPUT_DIR)."""
        bins = cfg.SUPERNET.FLOPS_BINS
        return {
            "model": model,
            "seed": cfg.SUPERNET.SEED,
            "sampler": cfg.SUPERNET.SAMPLER,
            "flops_bins": {key.lower(): bins[key] for key in ("RANGE", "NUM_BINS", "MAX_TRIES", "INCLUDE_CLASSIFIER")},
            "log_dir": cfg.OUTPUT_DIR if cfg.SUPERNET.LOG_PATHS else None,
        }

    def _build_sampler(self, name: str) -> Callable:
        if name not in PATH_SAMPLER_REGISTRY:
            allowed = tuple(dict(PATH_SAMPLER_REGISTRY))
            raise ValueError(f"SUPERNET.SAMPLER must be one of {allowed}, got {name!r}")
        return PATH_SAMPLER_REGISTRY.get(name)(self)

    def backbone_arch(self, arch):
        """The backbone's part of a model-level path (the FLOPs counted while sampling are the backbone's)."""
        return part_archs(self.parts, arch)["backbone"]

    def next_path(self):
        """Draw on rank 0 and broadcast to all ranks."""
        arch = [self.draw(self.rng) if comm.is_main_process() else None]
        if comm.get_world_size() > 1:
            dist.broadcast_object_list(arch, src=0)
        return arch[0]

    def before_train(self):
        if self.log_file:
            truncate_path_log(self.log_file, self.trainer.start_iter)

    def before_step(self):
        self.current = self.next_path()
        set_model_arch(self.model, self.current)
        if self.cost_model is not None:
            flops = self.cost_model.flops(self.backbone_arch(self.current), include_classifier=False)
            self.trainer.storage.put_scalar("supernet/path_mflops", flops / 1e6, smoothing_hint=False)
        if self.log_file:
            with open(self.log_file, "a") as f:
                f.write(json.dumps({"iter": self.trainer.iter, "arch": self.current}) + "\n")

    def state_dict(self):
        state = {"rng": self.rng.getstate()}
        if hasattr(self.draw, "state_dict"):  # a sampler that remembers draws between steps
            state["sampler"] = self.draw.state_dict()
        return state

    def load_state_dict(self, state_dict):
        self.rng.setstate(state_dict["rng"])
        if hasattr(self.draw, "load_state_dict") and "sampler" in state_dict:
            self.draw.load_state_dict(state_dict["sampler"])
        logging.getLogger(__name__).info("Path sampler state restored: the path sequence continues where it stopped")


@PATH_SAMPLER_REGISTRY.register()
def uniform(hook: PathSamplingHook) -> Callable:
    """Every candidate of every position equally likely (single-path one-shot training)."""
    return hook.space.sample


@PATH_SAMPLER_REGISTRY.register()
def flops_binned(hook: PathSamplingHook) -> Callable:
    """A uniform FLOPs bin first, then a path inside it (the DetNAS ImageNet sampler, megvii-model/DetNAS)."""
    if hook.cost_model is None:
        raise ValueError("SUPERNET.SAMPLER 'flops_binned' needs a one-shot DetNAS backbone (MODEL.DETNAS.ARCH '')")
    bins = hook.flops_bins
    include = bins["include_classifier"]
    return FlopsBinnedSampler(
        hook.space,
        lambda arch: hook.cost_model.flops(hook.backbone_arch(arch), include_classifier=include),
        bins["range"],
        bins["num_bins"],
        bins["max_tries"],
    )


@PATH_SAMPLER_REGISTRY.register()
def fair(hook: PathSamplingHook) -> Callable:
    """Every candidate of every position exactly once per block of consecutive steps (:class:`FairSampler`)."""
    if set(hook.parts) != {"backbone"}:
        raise ValueError("SUPERNET.SAMPLER 'fair' needs a model whose only one-shot part is the DetNAS backbone")
    return FairSampler(hook.space.num_blocks, NUM_CHOICES)
