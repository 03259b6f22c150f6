"""Train or evaluate a LazyConfig (``.py``) with the detnas_d2 plugin, in the convention of detectron2's
``tools/lazyconfig_train_net.py`` (overrides are ``key=value``; options may follow them), with exact ``--resume``,
a path sampled every iteration for one-shot models and the lock on ``train.output_dir``:

    python lazy_train_net.py --config-file configs/lazy/faster_rcnn_detnas_fpn_shapes.py
    python lazy_train_net.py --config-file ... --resume train.max_iter=1600
    python lazy_train_net.py --config-file ... --eval-only train.init_checkpoint=output/.../model_final.pth

A top-level ``shapes`` dict in the config sets the sizes of the embedded shapes splits (``DATASETS.SHAPES``).
"""

from detectron2.config import LazyConfig, instantiate
from detectron2.engine import create_ddp_model, default_argument_parser, default_setup

from ..data.datasets import register_shapes_sizes
from ..engine.lazy_trainer import LazyTrainer
from ..engine.trainer import ddp_options
from ..modeling.checkpoint import DetNASCheckpointer
from ..search.preflight import search_files
from .defaults import check_eval_weights, launch_main, parse_command_line, refuse_other_run

#: the top-level keys a LazyConfig needs for training (detectron2's lazy script reads the same)
REQUIRED_KEYS = ("model", "dataloader", "optimizer", "lr_multiplier", "train")


def load_lazy_cfg(args):
    """The LazyConfig of ``args`` (file, ``key=value`` overrides), its shapes splits registered; checks the keys."""
    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    missing = [key for key in REQUIRED_KEYS if key not in cfg]
    if missing:
        raise ValueError(
            f"{args.config_file} lacks the LazyConfig keys {missing} (needed: {list(REQUIRED_KEYS)}); a yacs .yaml "
            "config trains with train_net.py"
        )
    register_shapes_sizes(**cfg.get("shapes", {}))
    return cfg


def evaluate(cfg, resume: bool):
    """The results of ``train.init_checkpoint`` (or with ``resume`` the last checkpoint) on ``dataloader.test``."""
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    model = create_ddp_model(model, **ddp_options(model))
    DetNASCheckpointer(model, save_dir=cfg.train.output_dir).resume_or_load(cfg.train.init_checkpoint, resume=resume)
    return LazyTrainer.test(cfg, model)


def main(args):
    """One process of a run: setup (logging, seeds, config.yaml), then training or ``--eval-only``."""
    cfg = load_lazy_cfg(args)
    default_setup(cfg, args)
    if args.eval_only:
        return evaluate(cfg, args.resume)
    trainer = LazyTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def cli(argv=None):
    """Train or evaluate as the command line ``argv`` (default ``sys.argv[1:]``) asks; return the results."""
    args = parse_command_line(default_argument_parser(), argv, tokens_per_override=1)
    cfg = load_lazy_cfg(args)
    check_eval_weights(
        args, cfg.train.init_checkpoint, cfg.train.output_dir, "train.init_checkpoint", "train.output_dir"
    )
    output_dir = cfg.train.output_dir
    refuse_other_run(output_dir, search_files(output_dir), "a search", "a training")
    return launch_main(main, args, output_dir)


def run() -> None:
    """A console-script entry: :func:`cli` without handing its results to ``sys.exit``."""
    cli()


if __name__ == "__main__":
    cli()
