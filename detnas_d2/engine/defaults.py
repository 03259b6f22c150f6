"""Command-line setup shared by train_net.py, search_net.py and the pipeline: arguments, config, logging, seeds,
datasets."""
from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup

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
    register_from_config(cfg)
    return cfg
