"""Evolutionary (or random) architecture search on a trained supernet (DetNAS step 3), or with a proxy task.

For every candidate of a one-shot search: set its path, recalibrate BN statistics on the training split, score
bbox AP on the held-out search split with detectron2's COCOEvaluator. Candidates are spread over all processes.

    python search_net.py --config-file configs/search_fpn.yaml --num-gpus 8 MODEL.WEIGHTS output/supernet_fpn/model_final.pth
    python search_net.py --config-file ... --resume      # continue an interrupted search (options may go anywhere)

Writes search_log.jsonl, search_state.json, best_arch.json, search_progress.png, best_config.yaml (and
best_weights.pth for one-shot searches) into OUTPUT_DIR.
"""

from ..engine.defaults import argument_parser, launch_main, load_cfg, parse_command_line, setup_cfg
from ..search.launcher import run_search


def main(args):
    return run_search(setup_cfg(args), resume=args.resume)


def build_parser():
    return argument_parser()


def cli(argv=None):
    args = parse_command_line(build_parser(), argv)
    return launch_main(main, args, load_cfg(args).OUTPUT_DIR)


if __name__ == "__main__":
    cli()
