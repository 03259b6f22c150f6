"""Per-candidate evaluation time of the one-shot search, split into BN recalibration and inference.

Runs the search's own fitness (detnas_d2.search.one_shot.OneShotFitness) on random candidates of the
shapes FPN supernet (configs/shapes/search_fpn.yaml), one process, and prints seconds per candidate for each
part and candidates per minute. With no MODEL.WEIGHTS file the supernet is randomly initialised (inference is
then cheaper than on a trained supernet, which proposes more boxes).

    python benchmarks/bench_search_eval.py [--candidates 4] [KEY VALUE ...]
"""

import argparse
import os
import random
import statistics
import sys
import time

import torch
from detectron2.config import get_cfg
from detectron2.evaluation import inference_on_dataset

import detnas_d2  # noqa: F401
from detnas_d2.config import add_detnas_config
from detnas_d2.data.datasets import register_from_config
from detnas_d2.engine import Trainer
from detnas_d2.modeling.checkpoint import DetNASCheckpointer
from detnas_d2.parts.model import model_search_space, set_model_arch
from detnas_d2.search.one_shot import OneShotFitness

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default=os.path.join(REPO, "configs", "shapes", "search_fpn.yaml"))
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    cfg = add_detnas_config(get_cfg())
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    register_from_config(cfg)
    model = Trainer.build_model(cfg)
    if os.path.isfile(cfg.MODEL.WEIGHTS):
        DetNASCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    else:
        print(f"note: {cfg.MODEL.WEIGHTS} not found; timing a randomly initialised supernet", file=sys.stderr)
    fitness = OneShotFitness(cfg, model)
    one = fitness.evaluate_one
    space, rng = model_search_space(model), random.Random(0)
    recalib, infer = [], []
    for _ in range(args.candidates):
        set_model_arch(fitness.model, space.sample(rng))
        start = time.perf_counter()
        one.recalibrate()
        recalib.append(time.perf_counter() - start)
        start = time.perf_counter()
        inference_on_dataset(
            fitness.model, one.build_test_loader(one.dataset_name), one.build_evaluator(one.dataset_name)
        )
        infer.append(time.perf_counter() - start)
    r, i = statistics.median(recalib), statistics.median(infer)
    print(
        f"BN recalibration ({cfg.SEARCH.BN_RECALIB.NUM_BATCHES} batches x {cfg.SEARCH.BN_RECALIB.BATCH_SIZE}): "
        f"{r:.2f} s/candidate"
    )
    print(f"inference + COCO evaluation on {one.dataset_name}: {i:.2f} s/candidate")
    print(
        f"total {r + i:.2f} s/candidate = {60 / (r + i):.1f} candidates/minute (recalibration share {r / (r + i):.0%})"
    )


if __name__ == "__main__":
    main()
