"""The search's fitness: candidates sharded across ranks, each scored by one rank on the whole search split.

Every rank holds the supernet (its weights never change). A call with a batch of candidates gives rank ``r``
the candidates ``r, r + world, ...``; each rank recalibrates BN and runs inference on the full search split
alone (no collective inside an evaluation, so SyncBN layers are converted to plain BN), then all results are
gathered. Per-candidate work is identical whatever the number of processes, so 1 and N processes agree.
"""
from typing import Dict, List

from detectron2.data import build_detection_test_loader, get_detection_dataset_dicts
from detectron2.evaluation import COCOEvaluator
from detectron2.utils import comm

from ..data.mappers import build_test_mapper, build_train_mapper
from ..engine.bn_recalib import convert_sync_bn_to_bn
from ..engine.supernet_eval import ArchitectureEvaluator


def search_dataset_name(cfg) -> str:
    """``SEARCH.DATASET``, or the first test dataset when empty."""
    if cfg.SEARCH.DATASET:
        return cfg.SEARCH.DATASET
    if not cfg.DATASETS.TEST:
        raise ValueError("SEARCH.DATASET is empty and DATASETS.TEST names no dataset: nothing to score candidates on")
    return cfg.DATASETS.TEST[0]


def local_test_loader(cfg, dataset_name: str):
    """All images of ``dataset_name`` on this rank (detectron2's default loader shards them across ranks)."""
    dicts = get_detection_dataset_dicts([dataset_name], filter_empty=False)
    return build_detection_test_loader(dicts, mapper=build_test_mapper(cfg), sampler=range(len(dicts)),
                                       num_workers=cfg.DATALOADER.NUM_WORKERS)


def local_coco_evaluator(dataset_name: str):
    """bbox COCO evaluation of one rank's predictions, without gathering from other ranks."""
    return COCOEvaluator(dataset_name, tasks=("bbox",), distributed=False, output_dir=None)


class ShardedEvaluator:
    """Engine-facing evaluator: ``archs -> [results]``, candidates split across ranks, results gathered."""

    def __init__(self, cfg, model):
        self.model = convert_sync_bn_to_bn(model) if comm.get_world_size() > 1 else model
        self.model.eval()
        self.evaluate_one = ArchitectureEvaluator(
            cfg, self.model, search_dataset_name(cfg), build_test_loader=lambda name: local_test_loader(cfg, name),
            build_evaluator=local_coco_evaluator, train_mapper=build_train_mapper(cfg))

    def __call__(self, archs: List) -> List[Dict]:
        rank, world = comm.get_rank(), comm.get_world_size()
        mine = [self.evaluate_one(arch) for arch in archs[rank::world]]
        shards = comm.all_gather(mine) if world > 1 else [mine]
        return [shards[i % world][i // world] for i in range(len(archs))]
