"""Checks a search run makes before it writes anything, and what it does with a folder that holds a search.

``search_net.py`` runs :func:`preflight_search` in the launching process, on CPU, before any file is touched:
the config, the datasets, the supernet weights (every tensor of the one-shot model present), the cost limits
against the cost model's exact range, and the output folder (a new search never starts where a search is; a
resume must match the saved state or log). ``--overwrite`` moves an existing search aside, never deletes it.
"""

import os
import time

from detectron2.modeling import build_model

from ..engine.output_lock import LOCK_FILE
from .config import validate_search_config
from .export import CONFIG_FILE, WEIGHTS_FILE
from .joint import PHASE_ONE_DIR, phase_one_config, proxy_only_parts
from .launcher import one_shot_runner, proxy_runner, require_one_shot
from .one_shot import search_dataset_name
from .store import BEST_FILE, LOG_FILE, STATE_FILE, existing_search_error
from .supernet_weights import load_supernet_weights

#: files whose presence means that a folder holds a search (or its export); a joint search's first phase folder
SEARCH_FILES = (STATE_FILE, LOG_FILE, BEST_FILE, CONFIG_FILE, WEIGHTS_FILE, PHASE_ONE_DIR)
#: files a resume continues from
RESUMABLE_FILES = {STATE_FILE, LOG_FILE, PHASE_ONE_DIR}


def _cpu_config(cfg):
    """A copy of ``cfg`` building its model on CPU (the launching process checks without touching a GPU)."""
    out = cfg.clone()
    out.defrost()
    out.MODEL.DEVICE = "cpu"
    return out


def preflight_search(cfg):
    """Check the search config, its dataset, supernet weights and cost limits; return ``make_runner()``, building
    a fresh runner (no fitness) for the folder checks of :func:`check_output_dir` (a joint search: its first phase's
    runner). Writes nothing."""
    validate_search_config(cfg)
    search_dataset_name(cfg)
    if proxy_only_parts(cfg):
        cfg = phase_one_config(cfg)
    if cfg.SEARCH.EVALUATOR == "proxy":
        make_runner = proxy_runner(cfg, None)
    else:
        cpu = _cpu_config(cfg)
        model = require_one_shot(build_model(cpu))
        load_supernet_weights(cpu, model)
        make_runner = one_shot_runner(cfg, model, None)
    make_runner().constraints.check_feasible()
    return make_runner


def search_files(output_dir: str) -> list:
    """The files of :data:`SEARCH_FILES` present in ``output_dir``."""
    return [name for name in SEARCH_FILES if os.path.exists(os.path.join(output_dir, name))]


def check_output_dir(make_runner, output_dir: str, resume: bool, overwrite: bool) -> None:
    """Fail if the run cannot start in ``output_dir``: a new search where a search is (unless ``overwrite``), or a
    resume that does not match the saved state or log. Writes nothing."""
    found = search_files(output_dir)
    if overwrite or not found:
        return
    if not resume or not RESUMABLE_FILES & set(found):
        raise existing_search_error(output_dir, found, resume)
    make_runner().check_start(resume=True)


def aside_folder(output_dir: str) -> str:
    """A new timestamped sibling of ``output_dir``: ``<OUTPUT_DIR>.old-YYYYmmdd-HHMMSS[-N]``."""
    base = f"{os.path.normpath(output_dir)}.old-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 0
    while os.path.exists(path):
        n += 1
        path = f"{base}-{n}"
    return path


def move_search_aside(output_dir: str) -> str:
    """Move everything in ``output_dir`` but its lock file into :func:`aside_folder`; return that folder ("" when
    ``output_dir`` holds no search)."""
    if not search_files(output_dir):
        return ""
    target = aside_folder(output_dir)
    os.makedirs(target)
    for name in sorted(os.listdir(output_dir)):
        if name != LOCK_FILE:
            os.replace(os.path.join(output_dir, name), os.path.join(target, name))
    return target
