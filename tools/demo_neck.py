#!/usr/bin/env python
"""`make demo-neck`: the one-shot NAS-FPN neck search on the embedded shapes data, on CPU.

Stages: (1) train the joint one-shot supernet (DetNAS backbone + NAS-FPN neck, one sampled path per iteration;
configs/shapes/supernet_nasfpn_retinanet.yaml); (2) score a few neck paths on it with the search's own fitness
(the published NAS-FPN block and random necks, backbone fixed as configs/shapes/search_nasfpn.yaml fixes it, BN
recalibrated, bbox AP on shapes_search) and their whole-detector FLOPs; (3) run the short evolutionary neck search
of configs/shapes/search_nasfpn.yaml; (4) print the best neck architecture, its AP and detector FLOPs.
"""

import argparse
import json
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detectron2.config import get_cfg  # noqa: E402

import search_net  # noqa: E402
import train_net  # noqa: E402
from detnas_d2.config import add_detnas_config  # noqa: E402
from detnas_d2.data.datasets import register_from_config  # noqa: E402
from detnas_d2.engine import Trainer  # noqa: E402
from detnas_d2.modeling.checkpoint import DetNASCheckpointer  # noqa: E402
from detnas_d2.parts.model import model_search_space  # noqa: E402
from detnas_d2.search.launcher import build_cost_fns  # noqa: E402
from detnas_d2.search.one_shot import OneShotFitness  # noqa: E402
from detnas_d2.space.neck import NASFPN_ARCH, NUM_INPUTS, NUM_OUTPUT_CELLS  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUPERNET_CONFIG = os.path.join(REPO, "configs", "shapes", "supernet_nasfpn_retinanet.yaml")
SEARCH_CONFIG = os.path.join(REPO, "configs", "shapes", "search_nasfpn.yaml")


def train_supernet(output_dir: str, iters: int) -> str:
    """Stage 1: train the joint supernet for ``iters`` iterations (decays at 2/3 and 8/9); its checkpoint path."""
    train_net.cli(
        [
            "--config-file",
            SUPERNET_CONFIG,
            "SOLVER.MAX_ITER",
            str(iters),
            "SOLVER.STEPS",
            f"({iters * 2 // 3}, {iters * 8 // 9})",
            "DATASETS.TEST",
            "()",
            "OUTPUT_DIR",
            output_dir,
        ]
    )
    return os.path.join(output_dir, "model_final.pth")


def format_neck(arch) -> str:
    """One line per cell: output node, inputs, level, op (pool nodes 0-4 are the block inputs P3-P7)."""
    first_output = len(arch) - NUM_OUTPUT_CELLS
    return "\n".join(
        f"    node {NUM_INPUTS + i}: P{level} = {op}(node {a}, node {b})" + ("  [output]" if i >= first_output else "")
        for i, (a, b, level, op) in enumerate(arch)
    )


def score_neck_paths(weights: str, num_random: int, seed: int) -> list:
    """Stage 2: ``[(name, arch, AP, detector FLOPs)]`` of the published block and ``num_random`` random necks,
    scored exactly as the search scores candidates (same fitness, same cost function)."""
    cfg = add_detnas_config(get_cfg())
    cfg.merge_from_file(SEARCH_CONFIG)
    cfg.merge_from_list(["MODEL.WEIGHTS", weights])
    register_from_config(cfg)
    model = Trainer.build_model(cfg)
    DetNASCheckpointer(model).load(weights)
    fitness = OneShotFitness(cfg, model)
    flops = build_cost_fns(cfg, fitness.model)[0]["flops"]
    space, rng = model_search_space(fitness.model), random.Random(seed)
    paths = [("NAS-FPN (published)", NASFPN_ARCH)] + [(f"random {i}", space.sample(rng)) for i in range(num_random)]
    scored = []
    for name, arch in paths:
        cost = flops(arch)
        metrics = fitness([arch])[0]
        scored.append((name, arch, metrics["bbox"]["AP"], cost))
    return scored


def flops_limit_text(search_dir: str) -> str:
    """The detector FLOPs limit the search ran under, as recorded in its best_arch.json."""
    with open(os.path.join(search_dir, "best_arch.json")) as f:
        limit = json.load(f)["search"].get("limit.flops")
    return "no FLOPs limit" if limit is None else f"detector FLOPs limit {limit / 1e6:.2f} M"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default=os.path.join(REPO, "output", "demo_neck"))
    parser.add_argument("--iters", type=int, default=900, help="supernet training iterations")
    parser.add_argument("--num-random-paths", type=int, default=2, help="random necks scored besides NAS-FPN")
    parser.add_argument("--weights", default="", help="an already trained joint supernet: skip stage 1")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (1: the data-loader worker keeps the other core, and OpenMP "
        "threads slow down many-fold when the cores are shared)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    stage_times = {}

    weights = args.weights or train_supernet(os.path.join(args.output_dir, "supernet"), args.iters)
    stage_times["supernet training"] = time.time() - start

    mark = time.time()
    scored = score_neck_paths(weights, args.num_random_paths, seed=0)
    stage_times["scoring neck paths"] = time.time() - mark

    mark = time.time()
    search_dir = os.path.join(args.output_dir, "search")
    result = search_net.cli(
        ["--config-file", SEARCH_CONFIG, "MODEL.WEIGHTS", weights, "OUTPUT_DIR", search_dir, "--overwrite"]
    )  # a rerun searches the new supernet; the old search moves aside
    stage_times["neck search"] = time.time() - mark

    print("\n=== NAS-FPN neck search demo (shapes, CPU) ===")
    print(
        "neck paths of the trained supernet (COCO bbox AP in %, shapes_search, BN recalibrated; detector FLOPs at "
        "128x128):"
    )
    for name, _, ap, cost in scored:
        print(f"  {name:22s} AP {ap:6.2f}   {cost / 1e6:7.2f} M multiply-adds")
    best = result.best
    print(f"search: {result.n_evaluated} candidates evaluated, {flops_limit_text(search_dir)}")
    print(f"best neck architecture (AP {best.fitness:.2f}, {best.costs['flops'] / 1e6:.2f} M multiply-adds):")
    print(format_neck(best.arch))
    print("  as JSON (MODEL.NASFPN.ARCH):", json.dumps(best.arch))
    print(f"exported: {os.path.join(search_dir, 'best_config.yaml')} and best_weights.pth")
    for stage, seconds in stage_times.items():
        print(f"  {stage}: {seconds / 60:.1f} min")
    print(f"make demo-neck finished in {(time.time() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
