"""Command-line setup shared by train_net.py, search_net.py and the pipeline: config, logging, seeds."""
from detectron2.config import get_cfg
from detectron2.engine import default_setup

from ..config import add_detnas_config
from ..data.datasets import register_from_config


def setup_cfg(args):
    """detectron2's ``default_setup`` on a config with every detnas_d2 key, merged from file and overrides."""
    cfg = get_cfg()
    add_detnas_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    register_from_config(cfg)
    return cfg
