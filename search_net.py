#!/usr/bin/env python
"""Evolutionary (or random) architecture search on a trained supernet (DetNAS step 3).

For every candidate: set its path, recalibrate BN statistics on the training split, score bbox AP on the
held-out search split with detectron2's COCOEvaluator. Candidates are spread over all processes.

    python search_net.py --config-file configs/search_fpn.yaml --num-gpus 8 MODEL.WEIGHTS output/supernet_fpn/model_final.pth
    python search_net.py --config-file ... --resume      # continue an interrupted search

Writes search_log.jsonl, search_state.json, best_arch.json, search_progress.png, best_config.yaml and
best_weights.pth into OUTPUT_DIR.
"""
from detectron2.engine import launch

import detnas_d2  # noqa: F401  (registers the plugin's components)
from detnas_d2.engine.defaults import argument_parser, setup_cfg
from detnas_d2.search.launcher import run_search


def main(args):
    return run_search(setup_cfg(args), resume=args.resume)


def cli(argv=None):
    args = argument_parser().parse_args(argv)
    print("Command Line Args:", args)
    if args.num_gpus * args.num_machines == 1:
        return main(args)  # what launch() would do, keeping main's return value for callers
    return launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
                  dist_url=args.dist_url, args=(args,))


if __name__ == "__main__":
    cli()
