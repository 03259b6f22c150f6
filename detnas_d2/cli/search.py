"""Evolutionary (or random) architecture search on a trained supernet (DetNAS step 3), or with a proxy task.

For every candidate of a one-shot search: set its path, recalibrate BN statistics on the training split, score
bbox AP on the held-out search split with detectron2's COCOEvaluator. Candidates are spread over all processes.

    python search_net.py --config-file configs/search_fpn.yaml --num-gpus 8 \
        MODEL.WEIGHTS output/supernet_fpn/model_final.pth
    python search_net.py --config-file ... --resume      # continue an interrupted search (options may go anywhere)
    python search_net.py --config-file ... --overwrite   # start again: the old search moves to OUTPUT_DIR.old-<time>

Writes search_log.jsonl, search_state.json, best_arch.json, search_progress.png, best_config.yaml (and
best_weights.pth for one-shot searches) into OUTPUT_DIR; SEARCH.STRATEGY nsga2 adds pareto_front.json/.png, and
``--resume --export-rank K`` on a finished nsga2 search exports front member K without evaluating anything.
Before any file is written, the launching process checks the config, datasets, supernet weights, cost limits and
the folder: a new search never starts where a search or a training is, and a resume must match it. It then holds the
lock of OUTPUT_DIR for the whole run.
"""

import argparse

from detectron2.engine import default_argument_parser

from ..data.registration import add_registration_arguments
from ..search.launcher import run_search
from ..search.preflight import check_output_dir, move_search_aside, preflight_search
from .defaults import (
    USAGE_NOTE,
    launch_main,
    load_cfg,
    output_lock,
    parse_command_line,
    refuse_other_run,
    setup_cfg,
    training_files,
)


def main(args):
    """The search of one launched process."""
    return run_search(setup_cfg(args), resume=args.resume)


def build_parser():
    """The search's own options: detectron2's launch options (same names and defaults, no ``--eval-only``: a
    search always evaluates), ``--register-*``, ``--overwrite``, ``--export-rank`` and the KEY VALUE overrides."""
    detectron2_defaults = default_argument_parser()
    parser = argparse.ArgumentParser(description=USAGE_NOTE)
    parser.add_argument(
        "--config-file",
        default=detectron2_defaults.get_default("config_file"),
        metavar="FILE",
        help="path to the search config file",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the search in OUTPUT_DIR from search_state.json (it must match the config)",
    )
    parser.add_argument(
        "--num-gpus", type=int, default=detectron2_defaults.get_default("num_gpus"), help="number of gpus *per machine*"
    )
    parser.add_argument(
        "--num-machines",
        type=int,
        default=detectron2_defaults.get_default("num_machines"),
        help="total number of machines",
    )
    parser.add_argument(
        "--machine-rank",
        type=int,
        default=detectron2_defaults.get_default("machine_rank"),
        help="the rank of this machine (unique per machine)",
    )
    parser.add_argument(
        "--dist-url",
        default=detectron2_defaults.get_default("dist_url"),
        help="initialization URL for the PyTorch distributed backend ('auto': a free local port)",
    )
    add_registration_arguments(parser)
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, default=None, help='config overrides: space-separated "PATH.KEY VALUE" pairs'
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new search where one exists: its files first move to the sibling folder "
        "OUTPUT_DIR.old-<date>-<time> (nothing is deleted)",
    )
    parser.add_argument(
        "--export-rank",
        type=int,
        default=None,
        metavar="K",
        help="SEARCH.STRATEGY nsga2: export Pareto-front member K (0 = cheapest, see "
        "pareto_front.json) instead of the best METRIC; with --resume on a finished search it "
        "evaluates nothing and only exports K (same as SEARCH.EXPORT_RANK K)",
    )
    return parser


def with_export_rank(args):
    """``args`` with ``--export-rank K`` turned into the override ``SEARCH.EXPORT_RANK K``."""
    if args.export_rank is not None:
        args.opts = list(args.opts) + ["SEARCH.EXPORT_RANK", str(args.export_rank)]
    return args


def check_folder(make_engine, cfg, args) -> None:
    """The first machine's checks of OUTPUT_DIR (a search there, a resume matching it); writes nothing."""
    if args.machine_rank == 0:
        check_output_dir(make_engine, cfg.OUTPUT_DIR, args.resume, args.overwrite)


def cli(argv=None):
    """Check, lock and run the search of the command line ``argv`` (default ``sys.argv[1:]``)."""
    parser = build_parser()
    args = with_export_rank(parse_command_line(parser, argv))
    if args.resume and args.overwrite:
        parser.error("--resume continues the search in OUTPUT_DIR and --overwrite moves it aside: pass one of them")
    cfg = load_cfg(args)
    refuse_other_run(cfg.OUTPUT_DIR, training_files(cfg.OUTPUT_DIR), "a training", "a search")
    make_engine = preflight_search(cfg)
    check_folder(make_engine, cfg, args)  # a refused run stops here, before the lock file is written
    with output_lock(args, cfg.OUTPUT_DIR):
        check_folder(make_engine, cfg, args)  # again under the lock: another run may have finished meanwhile
        make_engine = None  # frees the checked model before the run builds its own
        if args.overwrite and args.machine_rank == 0:
            aside = move_search_aside(cfg.OUTPUT_DIR)
            if aside:
                print(f"Moved the previous search of {cfg.OUTPUT_DIR} to {aside}")
        return launch_main(main, args)


def run() -> None:
    """The ``detnas-search`` console script: :func:`cli` without handing its result to ``sys.exit``."""
    cli()


if __name__ == "__main__":
    cli()
