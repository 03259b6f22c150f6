"""Joint search from one config: the architecture by weight sharing, then what only a proxy can score.

``SEARCH.SPACE`` "backbone,neck,autoaug" with ``SEARCH.EVALUATOR`` "one_shot" runs two searches in one
``search_net.py`` run, each with its own folder, state and ``--resume``:

1. ``OUTPUT_DIR/phase1_one_shot``: a one-shot search of every one-shot part of the supernet (paths of one trained
   supernet, BN recalibrated per candidate, AP on the search split), exported as for a plain one-shot search.
2. ``OUTPUT_DIR/phase2_proxy``: a proxy search of the named parts no supernet holds (the augmentation policy: a
   policy changes how the detector is trained, which a trained supernet cannot show), every candidate training
   phase 1's exported detector (fixed architecture, inherited weights) on the ``SEARCH.PROXY`` schedule.

``OUTPUT_DIR/best_config.yaml`` is phase 2's export: both winners in one config, training into ``OUTPUT_DIR/retrain``.
"""

import os
from typing import List

from ..parts import get_part, parse_space
from ..utils.io import atomic_write
from .export import CONFIG_FILE, exported_config
from .store import LOG_FILE, STATE_FILE

PHASE_ONE_DIR = "phase1_one_shot"
PHASE_TWO_DIR = "phase2_proxy"


def proxy_only_parts(cfg) -> List[str]:
    """The parts ``SEARCH.SPACE`` names that no supernet holds (scored by proxy only); none for a proxy search."""
    if cfg.SEARCH.EVALUATOR == "proxy":
        return []
    return [name for name in parse_space(cfg.SEARCH.SPACE) if "one_shot" not in get_part(name).evaluators]


def phase_one_config(cfg):
    """``cfg`` searching in ``OUTPUT_DIR/phase1_one_shot``."""
    out = cfg.clone()
    out.defrost()
    out.OUTPUT_DIR = os.path.join(cfg.OUTPUT_DIR, PHASE_ONE_DIR)
    out.freeze()
    return out


def phase_two_config(cfg):
    """Phase 1's exported config (read from its folder) searching the proxy-only parts in ``OUTPUT_DIR/phase2_proxy``.

    Cost limits and latency are off: the architecture, the only thing with a cost, is fixed and was constrained in
    phase 1.
    """
    out = cfg.clone()
    out.defrost()
    out.merge_from_file(os.path.join(cfg.OUTPUT_DIR, PHASE_ONE_DIR, CONFIG_FILE))
    out.SEARCH.EVALUATOR = "proxy"
    out.SEARCH.SPACE = ",".join(proxy_only_parts(cfg))
    out.SEARCH.FLOPS_LIMIT = 0.0
    out.SEARCH.PARAMS_LIMIT = 0
    out.SEARCH.LATENCY.MODE = "off"
    out.SEARCH.LATENCY.LIMIT = 0.0
    out.OUTPUT_DIR = os.path.join(cfg.OUTPUT_DIR, PHASE_TWO_DIR)
    out.freeze()
    return out


def has_search(output_dir: str) -> bool:
    """True if ``output_dir`` holds a search state or log to resume from."""
    return any(os.path.exists(os.path.join(output_dir, name)) for name in (STATE_FILE, LOG_FILE))


def write_combined_config(cfg) -> str:
    """Copy phase 2's exported config to ``OUTPUT_DIR/best_config.yaml``, training into ``OUTPUT_DIR/retrain``."""
    out = cfg.clone()
    out.defrost()
    out.merge_from_file(os.path.join(cfg.OUTPUT_DIR, PHASE_TWO_DIR, CONFIG_FILE))
    path = os.path.join(cfg.OUTPUT_DIR, CONFIG_FILE)
    atomic_write(path, exported_config(out, cfg.OUTPUT_DIR).dump())
    return path
