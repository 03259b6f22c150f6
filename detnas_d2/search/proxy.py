"""Proxy-task fitness: every candidate trains a fresh detector for a short schedule and is scored on the held-out split.

This is how NAS-FPN (Ghiasi et al., CVPR 2019) and detection AutoAugment (Zoph et al., ECCV 2020) score candidates,
as opposed to the one-shot fitness, which scores paths of one trained supernet. For each candidate the
search config is cloned, the candidate is written into it by the searchable parts ``SEARCH.SPACE`` names, the
``SEARCH.PROXY`` schedule replaces the solver's, and :class:`ProxyTrainer` (the plugin's ``Trainer`` without
checkpoints or end-of-training hook evaluation) trains it in ``OUTPUT_DIR/proxy/<hash of the candidate>``;
``Trainer.test`` then scores it on ``search_dataset_name(cfg)``. Every candidate starts from the same seed,
so the differences between their scores come from the candidates.

Distribution: unlike :class:`~detnas_d2.search.one_shot.OneShotFitness` (one candidate per rank), all
ranks train each candidate together (DDP inside the trainer, ``SOLVER.IMS_PER_BATCH`` split over them) and
candidates run one after another. A proxy training is much longer than a one-shot evaluation and its batch
size is part of the proxy task, so spreading candidates over ranks would change each candidate's training
with the number of processes.
"""

import gc
import hashlib
import logging
import os
import shutil
from typing import Any, Callable, Dict, List

import torch
from detectron2.config import CfgNode as CN
from detectron2.data import DatasetCatalog, MetadataCatalog, get_detection_dataset_dicts
from detectron2.engine import hooks
from detectron2.modeling import build_model
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng

from ..cost import detector_flops
from ..engine.trainer import Trainer
from ..parts import get_part, parse_space, part_archs, part_names
from ..space.base import SearchSpace
from ..space.joint import JointSpace
from ..utils.io import atomic_write
from ..utils.subset import seeded_subset_indices
from .export import CONFIG_FILE, exported_config
from .one_shot import search_dataset_name

logger = logging.getLogger("detnas_d2.search")

#: folder under OUTPUT_DIR holding one sub-folder per proxy-trained candidate
PROXY_DIR = "proxy"


def proxy_part_names(cfg) -> List[str]:
    """The parts ``SEARCH.SPACE`` names, or a ValueError when one of them cannot be searched by proxy."""
    names = parse_space(cfg.SEARCH.SPACE)
    proxy_names = [name for name in part_names() if "proxy" in get_part(name).evaluators]
    if not names or any(name not in proxy_names for name in names):
        raise ValueError(
            f"cfg.SEARCH.SPACE = {cfg.SEARCH.SPACE!r} cannot be searched with SEARCH.EVALUATOR 'proxy'; "
            f"proxy-searchable spaces: {proxy_names} (the backbone is searched on a one-shot supernet: "
            "SEARCH.EVALUATOR 'one_shot')"
        )
    return names


def build_proxy_space(cfg) -> SearchSpace:
    """The search space of the parts ``SEARCH.SPACE`` names, sized by their ``SEARCH.AUTOAUG`` / ``SEARCH.NECK``
    keys (a joint space when it names several)."""
    spaces = {name: get_part(name).config_space(cfg) for name in proxy_part_names(cfg)}
    return next(iter(spaces.values())) if len(spaces) == 1 else JointSpace(spaces)


def candidate_config(cfg, space: SearchSpace, arch) -> CN:
    """A copy of ``cfg`` (schedule and data unchanged) that trains ``arch``: what a searched candidate exports."""
    out = cfg.clone()
    out.defrost()
    for name, part_arch in part_archs(proxy_part_names(cfg), space.validate(arch)).items():
        get_part(name).write_config(out, part_arch)
    return out


def candidate_dir_name(key: str) -> str:
    """Short stable folder name of a candidate: the first 12 hex digits of the SHA-1 of its memo key."""
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]


def train_subset_indices(num_images: int, subset: int, seed: int) -> List[int]:
    """Sorted indices of ``subset`` of ``num_images`` images drawn by :func:`seeded_subset_indices` (all when 0)."""
    if subset > num_images:
        raise ValueError(
            f"cfg.SEARCH.PROXY.TRAIN_SUBSET = {subset} is invalid: DATASETS.TRAIN holds only {num_images} "
            "training images (after DATALOADER.FILTER_EMPTY_ANNOTATIONS); use at most that many, or 0 for all"
        )
    if subset == 0:
        return list(range(num_images))
    return seeded_subset_indices(num_images, subset, seed)


def register_train_subset(cfg) -> str:
    """(Re-)register the proxy's training images, ``SEARCH.PROXY.TRAIN_SUBSET`` of ``DATASETS.TRAIN`` chosen by
    ``SEARCH.SEED``, as a dataset; return its name. Needs list-of-dicts (detectron2 catalog) datasets."""
    names = list(cfg.DATASETS.TRAIN)
    subset, seed, filter_empty = cfg.SEARCH.PROXY.TRAIN_SUBSET, cfg.SEARCH.SEED, cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
    name = f"{'+'.join(names)}_proxy{subset}_seed{seed}"

    def load():
        dicts = get_detection_dataset_dicts(names, filter_empty=filter_empty)
        if not isinstance(dicts, list):
            raise ValueError(
                f"cfg.SEARCH.PROXY.TRAIN_SUBSET = {subset} needs DATASETS.TRAIN {names} to be lists of dataset dicts; "
                f"got a {type(dicts).__name__}"
            )
        return [dicts[i] for i in train_subset_indices(len(dicts), subset, seed)]

    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, load)
    classes = MetadataCatalog.get(names[0]).get("thing_classes")
    if classes is not None:
        MetadataCatalog.get(name).set(thing_classes=list(classes))
    return name


def proxy_training_config(cfg, space: SearchSpace, arch, output_dir: str, train_datasets=None) -> CN:
    """The config of one proxy training: the candidate applied, the ``SEARCH.PROXY`` schedule and seed, the
    held-out split as test set, ``output_dir`` as output folder, ``train_datasets`` (default: DATASETS.TRAIN)."""
    proxy = cfg.SEARCH.PROXY
    out = candidate_config(cfg, space, arch)
    out.SOLVER.MAX_ITER = proxy.MAX_ITER
    out.SOLVER.STEPS = tuple(proxy.STEPS)
    if proxy.BASE_LR > 0:
        out.SOLVER.BASE_LR = proxy.BASE_LR
    out.SEED = proxy.SEED
    out.DATASETS.TEST = (search_dataset_name(cfg),)
    if train_datasets is not None:
        out.DATASETS.TRAIN = tuple(train_datasets)
    out.TEST.EVAL_PERIOD = 0
    out.OUTPUT_DIR = output_dir
    out.freeze()
    return out


class ProxyTrainer(Trainer):
    """The plugin's trainer for one proxy candidate: no checkpoints and no evaluation hook (scored afterwards)."""

    def build_hooks(self):
        return [h for h in super().build_hooks() if not isinstance(h, (hooks.PeriodicCheckpointer, hooks.EvalHook))]


class ProxyFitness:
    """The search's fitness on a proxy task: ``archs -> [results]``, each candidate trained briefly from scratch and
    scored.

    Call it on every rank with the same candidates (the main rank broadcasts them); the results are meaningful
    on the main rank.
    """

    def __init__(self, cfg, space: SearchSpace):
        """``cfg``: the search config (``SEARCH.SPACE``, ``SEARCH.PROXY``); ``space`` encodes the candidates."""
        proxy_part_names(cfg)
        self.cfg = cfg
        self.space = space
        self.train_datasets = (register_train_subset(cfg),) if cfg.SEARCH.PROXY.TRAIN_SUBSET else None

    def candidate_dir(self, arch) -> str:
        """``OUTPUT_DIR/proxy/<hash>``: the training folder of ``arch``."""
        return os.path.join(self.cfg.OUTPUT_DIR, PROXY_DIR, candidate_dir_name(self.space.encode(arch)))

    def training_config(self, arch) -> CN:
        """The proxy-training config of ``arch``."""
        return proxy_training_config(self.cfg, self.space, arch, self.candidate_dir(arch), self.train_datasets)

    def evaluate_one(self, arch) -> Dict:
        """Train ``arch``'s detector on the proxy schedule (all ranks together) and return its test results."""
        cfg = self.training_config(arch)
        if comm.is_main_process():
            shutil.rmtree(cfg.OUTPUT_DIR, ignore_errors=True)  # a resumed search retrains an interrupted candidate
            os.makedirs(cfg.OUTPUT_DIR)
            atomic_write(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), cfg.dump())
        comm.synchronize()
        logger.info(f"Proxy training of {self.space.encode(arch)} in {cfg.OUTPUT_DIR}")
        seed_all_rng(cfg.SEED + comm.get_rank())  # as default_setup seeds: same per candidate, distinct per rank
        trainer = ProxyTrainer(cfg)
        trainer.resume_or_load(resume=False)  # MODEL.WEIGHTS (e.g. a pretrained backbone) or from scratch
        trainer.train()
        results = ProxyTrainer.test(cfg, trainer.model)
        del trainer  # releases the model and the loader's workers before the next candidate
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return results

    def __call__(self, archs: List) -> List[Dict]:
        return [self.evaluate_one(arch) for arch in archs]


def build_proxy_cost_fns(cfg, space: SearchSpace) -> Dict[str, Callable[[Any], float]]:
    """Cost functions of a proxy search: detector FLOPs when a searched part changes the detector (the neck), none
    otherwise (an AutoAugment policy does not). A limit on a cost the space lacks raises a ValueError naming the key."""
    s = cfg.SEARCH
    if s.LATENCY.MODE != "off":
        raise ValueError(
            f"cfg.SEARCH.LATENCY.MODE = {s.LATENCY.MODE!r} is invalid with SEARCH.EVALUATOR 'proxy': "
            "latency is measured on one-shot backbones only; set it 'off'"
        )
    cost_fns = {}
    detector_parts = [name for name in proxy_part_names(cfg) if get_part(name).changes_detector]
    if detector_parts:
        if s.FLOPS_MODE != "detector":
            raise ValueError(
                f"cfg.SEARCH.FLOPS_MODE = {s.FLOPS_MODE!r} is invalid for a proxy {'+'.join(detector_parts)} search: "
                "it does not change the backbone's FLOPs; use 'detector' (whole detector at SEARCH.DETECTOR_INPUT_SIZE)"
            )
        cost_fns["flops"] = candidate_detector_flops(cfg, space)
    for key, cost in (("FLOPS_LIMIT", "flops"), ("PARAMS_LIMIT", "params")):
        if s[key] > 0 and cost not in cost_fns:
            raise ValueError(
                f"cfg.SEARCH.{key} = {s[key]:g} is set, but SEARCH.SPACE {s.SPACE!r} with SEARCH.EVALUATOR 'proxy' has "
                f"no {cost} cost (costs: {sorted(cost_fns) or 'none'}); set SEARCH.{key} 0"
            )
    return cost_fns


def candidate_detector_flops(cfg, space: SearchSpace) -> Callable[[Any], int]:
    """``arch -> FLOPs`` of the detector ``candidate_config`` builds, at ``SEARCH.DETECTOR_INPUT_SIZE`` (the
    runner caches costs per candidate). Fails if the built model lacks a searched part (e.g. a NAS-FPN neck)."""
    height, width = cfg.SEARCH.DETECTOR_INPUT_SIZE
    parts = [get_part(name) for name in proxy_part_names(cfg) if get_part(name).changes_detector]

    def flops(arch) -> int:
        model = build_model(candidate_config(cfg, space, arch))
        for part in parts:
            if part.find(model) is None:
                raise ValueError(
                    f"SEARCH.SPACE {part.name!r} needs a detector with a {part.description}, but MODEL.BACKBONE.NAME = "
                    f"{cfg.MODEL.BACKBONE.NAME!r} (MODEL.NECK.NAME = {cfg.MODEL.NECK.NAME!r}) builds none"
                )
        return detector_flops(model, height, width)

    return flops


def proxy_fingerprint(cfg) -> Dict[str, Any]:
    """The proxy settings a resumed search must share with the interrupted one (the runner compares them)."""
    nodes = {"PROXY": cfg.SEARCH.PROXY, "AUTOAUG": cfg.SEARCH.AUTOAUG, "NECK": cfg.SEARCH.NECK}
    settings = {f"SEARCH.{node}.{key}": value for node, values in nodes.items() for key, value in values.items()}
    return {"SEARCH.EVALUATOR": cfg.SEARCH.EVALUATOR, **settings}


def export_proxy_best(cfg, space: SearchSpace, arch, output_dir: str) -> str:
    """Write ``best_config.yaml``: the search config with ``arch`` applied and the full (non-proxy) schedule and
    data, training into ``output_dir/retrain``; no weights (retrain from MODEL.WEIGHTS, e.g. a pretrained
    backbone, or from scratch). Return its path."""
    path = os.path.join(output_dir, CONFIG_FILE)
    atomic_write(path, exported_config(candidate_config(cfg, space, arch), output_dir).dump())
    return path
