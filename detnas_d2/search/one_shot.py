"""The one-shot fitness: supernet paths sharded across ranks, each scored by one rank on the whole search split.

Every rank holds the supernet (its weights never change). A call with a batch of candidates gives rank ``r``
the candidates ``r, r + world, ...``; each rank recalibrates BN and runs inference on the full search split
alone (no collective inside an evaluation, so SyncBN layers are converted to plain BN), then all results are
gathered. Per-candidate work is identical whatever the number of processes, so 1 and N processes agree.
"""

import os
from typing import Dict, List

from detectron2.data import MetadataCatalog, build_detection_test_loader, get_detection_dataset_dicts
from detectron2.data.datasets.coco import convert_to_coco_json
from detectron2.evaluation import COCOEvaluator
from detectron2.utils import comm

from ..data.registration import set_json_file
from ..engine.bn_recalib import convert_sync_bn_to_bn
from ..engine.supernet_eval import PathTester
from ..engine.trainer import Trainer


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
    return build_detection_test_loader(
        dicts, mapper=Trainer.build_test_mapper(cfg), sampler=range(len(dicts)), num_workers=cfg.DATALOADER.NUM_WORKERS
    )


def local_coco_evaluator(dataset_name: str):
    """bbox COCO evaluation of one rank's predictions, without gathering from other ranks."""
    return COCOEvaluator(dataset_name, tasks=("bbox",), distributed=False, output_dir=None)


def ensure_coco_ground_truth(cfg, dataset_name: str) -> None:
    """Give a dataset without a COCO json file (e.g. Pascal VOC) one, written once under OUTPUT_DIR.

    COCOEvaluator converts such datasets itself only when it may write results, which search evaluations don't.
    Each rank writes its own copy, so no rank waits for another.
    """
    if MetadataCatalog.get(dataset_name).get("json_file"):
        return
    path = os.path.join(cfg.OUTPUT_DIR, "search_ground_truth", f"{dataset_name}.rank{comm.get_rank()}.json")
    convert_to_coco_json(dataset_name, path, allow_cached=False)
    set_json_file(dataset_name, path)


class OneShotFitness:
    """The search's fitness of supernet paths: ``archs -> [results]``, candidates split across ranks, results
    gathered."""

    def __init__(self, cfg, model):
        self.model = convert_sync_bn_to_bn(model) if comm.get_world_size() > 1 else model
        self.model.eval()
        dataset_name = search_dataset_name(cfg)
        ensure_coco_ground_truth(cfg, dataset_name)
        self.evaluate_one = PathTester(
            cfg,
            self.model,
            dataset_name,
            build_test_loader=lambda name: local_test_loader(cfg, name),
            build_evaluator=local_coco_evaluator,
            train_mapper=Trainer.build_train_mapper(cfg),
            recalib=cfg.SEARCH.BN_RECALIB,
            recalib_seed=cfg.SEARCH.SEED,
        )

    def __call__(self, archs: List) -> List[Dict]:
        rank, world = comm.get_rank(), comm.get_world_size()
        mine = [self.evaluate_one(arch) for arch in archs[rank::world]]
        shards = comm.all_gather(mine) if world > 1 else [mine]
        return [shards[i % world][i // world] for i in range(len(archs))]
