"""Train or evaluate a detectron2 model with the detnas_d2 plugin (supernets, searched backbones, NAS-FPN,
AutoAugment). Same command line as detectron2's tools/train_net.py, plus ``--register-coco`` /
``--register-voc`` for your own data and ``--save-results FILE`` (with ``--eval-only``):

    python train_net.py --config-file configs/shapes/supernet_fpn.yaml --num-gpus 2
    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
    python train_net.py --config-file ... MODEL.WEIGHTS w.pth --resume   # options may follow the overrides

The launching process holds the lock of OUTPUT_DIR for the whole run: a second run into the same folder fails.
``--eval-only`` without weights to evaluate (MODEL.WEIGHTS empty, no checkpoint to ``--resume``) is refused, and so
is a run into a folder that holds a search.
"""

import json

from detectron2.evaluation import verify_results
from detectron2.utils import comm

from ..engine import Trainer
from ..modeling.checkpoint import DetNASCheckpointer
from ..search.preflight import search_files
from ..utils.io import atomic_write
from .defaults import (
    argument_parser,
    check_eval_weights,
    launch_main,
    load_cfg,
    parse_command_line,
    refuse_other_run,
    setup_cfg,
)


def main(args):
    cfg = setup_cfg(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetNASCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
            if args.save_results:
                atomic_write(args.save_results, json.dumps(results, indent=1, sort_keys=True))
        return results
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def build_parser():
    parser = argument_parser()
    parser.add_argument(
        "--save-results",
        default="",
        metavar="FILE",
        help="with --eval-only: also write the evaluation results to FILE (JSON)",
    )
    return parser


def cli(argv=None):
    """Train or evaluate as the command line ``argv`` (default ``sys.argv[1:]``) asks; return the results."""
    args = parse_command_line(build_parser(), argv)
    cfg = load_cfg(args)
    check_eval_weights(args, cfg.MODEL.WEIGHTS, cfg.OUTPUT_DIR)
    refuse_other_run(cfg.OUTPUT_DIR, search_files(cfg.OUTPUT_DIR), "a search", "a training")
    return launch_main(main, args, cfg.OUTPUT_DIR)


def run() -> None:
    """The ``detnas-train`` console script: :func:`cli` without handing its results to ``sys.exit``."""
    cli()


if __name__ == "__main__":
    cli()
