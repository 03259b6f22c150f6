"""Command-line setup shared by train_net.py, search_net.py and the pipeline: arguments, config, logging, seeds,
datasets."""
from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import add_detnas_config
from ..data.datasets import register_from_config
from ..data.registration import add_command_line_datasets, add_registration_arguments, resolve_search_holdout


def argument_parser(epilog=None):
    """detectron2's ``default_argument_parser`` plus ``--register-coco`` / ``--register-voc`` (your own data)."""
    parser = default_argument_parser(epilog)
    add_registration_arguments(parser)
    return parser


def setup_cfg(args):
    """detectron2's ``default_setup`` on a config with every detnas_d2 key, merged from file, overrides and the
    ``--register-*`` datasets; then registers the config's datasets (this runs in every launched process)."""
    cfg = get_cfg()
    add_detnas_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    add_command_line_datasets(cfg, args)
    resolve_search_holdout(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="detnas_d2")  # search progress, ETA
    register_from_config(cfg)
    return cfg


def launch_main(main, args):
    """Run ``main(args)`` in every process detectron2's ``launch`` starts for ``args``; in a single process,
    call it directly and return its result (``launch`` discards it)."""
    print("Command Line Args:", args)
    if args.num_gpus * args.num_machines == 1:
        return main(args)
    return launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
                  dist_url=args.dist_url, args=(args,))
