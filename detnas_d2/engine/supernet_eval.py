"""Test one architecture of a supernet: set the path, recalibrate BN, run detectron2 inference + DatasetEvaluator.

Used by the trainer (evaluating a few paths of a supernet during/after training, and ``--eval-only`` of a
supernet path, with ``SUPERNET.EVAL.BN_RECALIB``) and by the architecture search (with ``SEARCH.BN_RECALIB``), so
both report the same number for the same architecture and the same recalibration settings. Recalibration sees
the same images for every candidate (a fixed-seed stream of the training split, identical on all ranks) and never
disturbs the model's training state.
"""

import contextlib
import logging
import random
from collections import OrderedDict
from typing import Callable, Dict, Iterator

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import build_detection_train_loader, get_detection_dataset_dicts
from detectron2.evaluation import DatasetEvaluator, inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage
from torch.utils.data import Sampler

from ..parts.model import set_model_arch, unwrap
from .bn_recalib import batchnorm_modules, recalibrate_bn


class SeededStream(Sampler):
    """An endless stream of dataset indices, reshuffled each epoch from a fixed seed; the same on every rank."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed = size, seed

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self.seed)
        while True:
            yield from torch.randperm(self.size, generator=g).tolist()


@contextlib.contextmanager
def preserved_training_state(model: torch.nn.Module):
    """Restore BN statistics, train/eval mode and global RNG states after the block."""
    layers = batchnorm_modules(model)
    saved_bn = [
        {k: v.clone() for k, v in bn.state_dict().items() if "running" in k or "num_batches" in k} for bn in layers
    ]
    was_training = model.training
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    try:
        yield
    finally:
        for bn, state in zip(layers, saved_bn):
            for key, value in state.items():
                getattr(bn, key).copy_(value)
        model.train(was_training)
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])


class PathTester:
    """Tests architectures (paths) of a one-shot model on one dataset, as detectron2's ``test`` does; BN
    recalibrated per candidate.

    ``build_test_loader(dataset_name)`` and ``build_evaluator(dataset_name)`` come from the trainer, so the
    loader/evaluator kinds (detection COCOEvaluator, classification) follow the dataset. ``train_mapper`` maps
    the ``recalib_dataset`` images for recalibration (the training augmentation, as DetNAS did). ``recalib`` holds
    the recalibration settings (``NUM_BATCHES``, ``BATCH_SIZE``, ``MODE``, ``MOMENTUM``) and ``recalib_seed`` fixes
    its images. Built from a yacs cfg (``PathTester(cfg, model, ...)``: the training split, DATALOADER keys) or from
    plain arguments (``recalib_dataset``, ``aspect_ratio_grouping``, ``num_workers``; for LazyConfigs).
    """

    @configurable
    def __init__(
        self,
        model: torch.nn.Module,
        dataset_name: str,
        build_test_loader: Callable,
        build_evaluator: Callable[[str], DatasetEvaluator],
        train_mapper,
        recalib,
        recalib_seed: int,
        *,
        recalib_dataset: Callable[[], list],
        aspect_ratio_grouping: bool = True,
        num_workers: int = 0,
    ):
        self.model = unwrap(model)
        self.dataset_name = dataset_name
        self.build_test_loader = build_test_loader
        self.build_evaluator = build_evaluator
        self.num_batches, self.batch_size = recalib.NUM_BATCHES, recalib.BATCH_SIZE
        self.mode, self.momentum = recalib.MODE, recalib.MOMENTUM
        self.seed = recalib_seed
        self.train_mapper = train_mapper
        self.aspect_ratio_grouping, self.num_workers = aspect_ratio_grouping, num_workers
        self.recalib_dataset = recalib_dataset() if self.num_batches > 0 else None

    @classmethod
    def from_config(
        cls, cfg, model, dataset_name, build_test_loader, build_evaluator, train_mapper, recalib, recalib_seed
    ):
        """The arguments of a yacs run: recalibration images from ``DATASETS.TRAIN``, loader settings from
        ``DATALOADER``."""
        return {
            "model": model,
            "dataset_name": dataset_name,
            "build_test_loader": build_test_loader,
            "build_evaluator": build_evaluator,
            "train_mapper": train_mapper,
            "recalib": recalib,
            "recalib_seed": recalib_seed,
            "recalib_dataset": lambda: get_detection_dataset_dicts(
                cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
            ),
            "aspect_ratio_grouping": cfg.DATALOADER.ASPECT_RATIO_GROUPING,
            "num_workers": cfg.DATALOADER.NUM_WORKERS,
        }

    def recalibrate(self) -> None:
        """Reset and re-estimate BN statistics of the current path on ``NUM_BATCHES`` fixed training batches.

        Every call (every candidate, every rank) sees the same images and augmentation draws: the loader is
        rebuilt from the same seed and each rank gets the full ``BATCH_SIZE`` (not a share of it), so results
        do not depend on the number of processes.
        """
        seed_all_rng(self.seed)
        loader = build_detection_train_loader(
            dataset=self.recalib_dataset,
            mapper=self.train_mapper,
            sampler=SeededStream(len(self.recalib_dataset), self.seed),
            total_batch_size=self.batch_size * comm.get_world_size(),
            aspect_ratio_grouping=self.aspect_ratio_grouping,
            num_workers=self.num_workers,
            seed=self.seed,
        )
        with EventStorage():  # detectron2 models log training metrics; these are throw-away
            recalibrate_bn(self.model, iter(loader), self.num_batches, mode=self.mode, momentum=self.momentum)

    def __call__(self, arch=None) -> Dict:
        """detectron2 evaluation results (e.g. ``{"bbox": {"AP": ...}}``) of ``arch``.

        ``arch=None`` evaluates the model as built (a fixed architecture), recalibrating its BN all the same.
        The model keeps the candidate's recalibrated statistics until the next call; wrap calls in
        :func:`preserved_training_state` where the training state matters.
        """
        if arch is not None:
            set_model_arch(self.model, arch)
        if self.num_batches > 0:
            self.recalibrate()
        loader = self.build_test_loader(self.dataset_name)
        results = inference_on_dataset(self.model, loader, self.build_evaluator(self.dataset_name))
        logging.getLogger(__name__).info(f"architecture {arch}: {dict(results)}")
        return results


def evaluate_paths(evaluate: PathTester, model: torch.nn.Module, paths, dataset_name: str) -> Dict:
    """Results of every path of ``paths`` by ``evaluate`` (training state kept): the mean over paths under each
    task, and each path under ``<task>/path<i>`` when there are several; the means are printed on rank 0."""
    logger = logging.getLogger(__name__)
    per_path = []
    with preserved_training_state(model):
        for i, arch in enumerate(paths):
            logger.info(f"Evaluating path {i} of {len(paths)} on {dataset_name}: {arch}")
            per_path.append(evaluate(arch))
    merged = OrderedDict()
    for task in per_path[0]:
        merged[task] = {k: float(np.mean([r[task][k] for r in per_path])) for k in per_path[0][task]}
        if len(per_path) > 1:
            for i, r in enumerate(per_path):
                merged[f"{task}/path{i}"] = r[task]
    if comm.is_main_process():
        logger.info(f"Mean over {len(paths)} paths on {dataset_name}:")
        print_csv_format({task: merged[task] for task in per_path[0]})
    return merged
