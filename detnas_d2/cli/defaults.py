"""Command-line setup shared by train_net.py, search_net.py and the pipeline: arguments, config, logging, seeds,
datasets, and the lock on OUTPUT_DIR."""

import contextlib
import functools
import os
import re
import sys

import torch.distributed as dist
from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import add_detnas_config, merge_from_file, merge_from_list
from ..data.datasets import register_from_config
from ..data.registration import add_command_line_datasets, add_registration_arguments, resolve_search_holdout
from ..engine.output_lock import OutputDirLock
from ..utils.io import full_disk_cause

#: files whose presence in a folder means that a training ran there
TRAINING_FILE = re.compile(r"last_checkpoint|model_(\d+|final)\.pth|metrics\.json")

#: how the trailing overrides and the options may be mixed (shown by ``-h``)
USAGE_NOTE = (
    "Options (--resume, --num-gpus N, --register-coco ...) may stand before, between or after the "
    "KEY VALUE overrides, in KEY positions."
)


def argument_parser(epilog=None):
    """train_net.py's options: detectron2's ``default_argument_parser`` plus ``--register-coco`` / ``--register-voc``
    (your own data)."""
    parser = default_argument_parser(epilog)
    parser.description = USAGE_NOTE
    add_registration_arguments(parser)
    return parser


def _num_values(parser, token: str) -> int:
    """How many values follow the option ``token`` (``--opt=value`` carries its own)."""
    action = parser._option_string_actions.get(token.split("=", 1)[0])
    if action is None:
        parser.error(
            f"unknown option {token} among the KEY VALUE overrides; options: "
            f"{', '.join(sorted(parser._option_string_actions))}"
        )
    if "=" in token:
        return 0
    if action.nargs is None:
        return 1
    if isinstance(action.nargs, int):
        return action.nargs
    parser.error(f"option {token} takes a variable number of values: put it before the KEY VALUE overrides")


def split_overrides(parser, opts, tokens_per_override: int = 2):
    """``(options, overrides)``: the options standing in KEY positions of ``opts`` and the overrides (yacs: KEY VALUE
    pairs; LazyConfig, ``tokens_per_override=1``: ``key=value``)."""
    options, overrides, i = [], [], 0
    while i < len(opts):
        if opts[i].startswith("-"):
            n = 1 + _num_values(parser, opts[i])
            options += opts[i : i + n]
        else:
            n = tokens_per_override
            overrides += opts[i : i + n]
        i += n
    if len(overrides) % tokens_per_override:
        parser.error(f"the override {overrides[-1]!r} has no value: overrides are KEY VALUE pairs")
    return options, overrides


def parse_command_line(parser, argv=None, tokens_per_override: int = 2):
    """``parser.parse_args(argv)``, also accepting options after or between the trailing overrides."""
    args = parser.parse_args(argv)
    options, overrides = split_overrides(parser, args.opts or [], tokens_per_override)
    if options:
        args = parser.parse_args(options, namespace=args)
    args.opts = overrides
    return args


def load_cfg(args):
    """The frozen config of ``args`` (file, overrides, ``--register-*`` datasets) with its datasets registered and
    checked; writes nothing, so a run can validate everything before touching OUTPUT_DIR."""
    cfg = get_cfg()
    add_detnas_config(cfg)
    merge_from_file(cfg, args.config_file)
    merge_from_list(cfg, args.opts)
    add_command_line_datasets(cfg, args)
    resolve_search_holdout(cfg)
    cfg.freeze()
    register_from_config(cfg)
    return cfg


def setup_cfg(args):
    """:func:`load_cfg`, then detectron2's ``default_setup`` (logging, seeds, ``OUTPUT_DIR/config.yaml``); runs in
    every launched process."""
    cfg = load_cfg(args)
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="detnas_d2")  # search progress, ETA
    return cfg


def training_files(output_dir: str) -> list:
    """The files of ``output_dir`` showing that a training ran there (checkpoints, last_checkpoint, metrics.json)."""
    names = sorted(os.listdir(output_dir)) if os.path.isdir(output_dir) else []
    return [name for name in names if TRAINING_FILE.fullmatch(name)]


def refuse_other_run(output_dir: str, found: list, holds: str, run: str) -> None:
    """Fail, naming what ``output_dir`` holds, when it holds the files ``found`` of another kind of run."""
    if found:
        raise ValueError(
            f"OUTPUT_DIR {output_dir} holds {holds} ({', '.join(found)}): {run} there would overwrite its config.yaml "
            "and mix the files of two runs; choose another OUTPUT_DIR"
        )


def check_eval_weights(args, weights: str, output_dir: str, key: str = "MODEL.WEIGHTS", folder: str = "OUTPUT_DIR"):
    """``--eval-only`` evaluates trained weights: ``weights`` (config key ``key``), or with ``--resume`` the last
    checkpoint of ``output_dir`` (config key ``folder``)."""
    resumable = args.resume and os.path.isfile(os.path.join(output_dir, "last_checkpoint"))
    if args.eval_only and not weights and not resumable:
        raise ValueError(
            f"{key} is empty: --eval-only would report the AP of a randomly initialised model. Set "
            f"{key} to trained weights (e.g. a training's {folder}/model_final.pth), or pass --resume to evaluate the "
            f"last checkpoint of {folder}"
        )


def output_lock(args, output_dir: str):
    """The lock of ``output_dir`` for the first machine's launching process (the others hold nothing)."""
    return OutputDirLock(output_dir) if args.machine_rank == 0 else contextlib.nullcontext()


def launch_main(main, args, output_dir: str = ""):
    """Run ``main(args)`` in every process detectron2's ``launch`` starts for ``args``; in a single process,
    call it directly and return its result (``launch`` discards it). With ``output_dir``, the launching process
    holds that folder's lock for the whole run. A full disk ends the run with one line naming the folder."""
    print("Command Line Args:", args)
    with output_lock(args, output_dir) if output_dir else contextlib.nullcontext():
        if args.num_gpus * args.num_machines == 1:
            try:
                return main(args)
            except OSError as err:  # also what a full disk makes of the writes after the first failed one
                full = full_disk_cause(err)
                if full is None:
                    raise
                sys.exit(f"error: {full}")
        return launch(
            functools.partial(_main_then_leave_together, main),
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )


def _main_then_leave_together(main, args):
    """``main(args)`` in one process of ``launch``; then wait for every rank and close the process group.

    Ranks finish at different times (rank 0 alone writes a search's exports). A rank that exits while another
    still holds the gloo/NCCL group can bring that process down at interpreter shutdown, so all ranks meet
    at a barrier and destroy the group explicitly. An exception skips this: ``launch`` stops the others.
    """
    result = main(args)
    if dist.is_initialized():
        comm.synchronize()
        dist.destroy_process_group()
    return result
