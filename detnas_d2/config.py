"""``add_detnas_config(cfg)``: declares every config key the package adds, with defaults; and the one place where
configs written for older key names are read.

Each area declares its own keys in a leaf ``config.py`` (``data``, ``modeling``, ``engine``, ``search``); this
module composes them. Calling it twice on the same config is harmless.
"""

import ast
import logging
from typing import List

from detectron2.config import CfgNode as CN

from .data.config import add_data_config
from .engine.config import add_engine_config
from .modeling.config import add_modeling_config
from .search.config import add_search_config

logger = logging.getLogger(__name__)

#: old key -> new key of every renamed key; configs using the old name still load (with a warning)
RENAMED_KEYS = {
    "MODEL.NASFPN.BOTTOM_UP": "MODEL.NECK.BOTTOM_UP",  # also drives the plain FPN neck
    "MODEL.NASFPN.IN_FEATURES": "MODEL.NECK.IN_FEATURES",
}


def add_detnas_config(cfg: CN) -> CN:
    """Declare all detnas_d2 config keys on a detectron2 ``CfgNode`` (idempotent)."""
    add_data_config(cfg)
    add_modeling_config(cfg)
    add_engine_config(cfg)
    add_search_config(cfg)
    return cfg


def _warn_renamed(old: str, new: str, source: str) -> None:
    """Log that ``source`` uses the old name of a key."""
    logger.warning(f"{source}: config key {old} was renamed to {new}; reading it as {new} (please update)")


def _rename_in_dict(node: dict, source: str) -> bool:
    """Move every renamed key of the nested dict ``node`` to its new place; True if any was found."""
    found = False
    for old, new in RENAMED_KEYS.items():
        *old_path, old_leaf = old.split(".")
        parent = node
        for part in old_path:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or old_leaf not in parent:
            continue
        *new_path, new_leaf = new.split(".")
        target = node
        for part in new_path:
            target = target.setdefault(part, {})
        target[new_leaf] = parent.pop(old_leaf)
        _warn_renamed(old, new, source)
        found = True
    return found


def merge_from_file(cfg: CN, filename: str) -> None:
    """``cfg.merge_from_file(filename)``, reading keys under their old names (``RENAMED_KEYS``) as the new ones."""
    loaded = cfg.load_yaml_with_base(filename, allow_unsafe=True)
    if not _rename_in_dict(loaded, filename):
        cfg.merge_from_file(filename)
        return
    loaded = type(cfg)(loaded)
    if loaded.get("VERSION", cfg.VERSION) != cfg.VERSION:
        raise ValueError(
            f"{filename}: a detectron2 v{loaded.VERSION} config with renamed detnas_d2 keys; "
            f"rename {sorted(RENAMED_KEYS)} to {sorted(RENAMED_KEYS.values())} and load it again"
        )
    cfg.merge_from_other_cfg(loaded)


def _float_literal(cfg: CN, key: str, value):
    """``value`` as a float literal when ``key`` holds a float and ``value`` is an integer literal (yacs would call
    ``SEARCH.FLOPS_LIMIT -1`` a "Type mismatch (float vs int)" and never get to the key's own check)."""
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return value
        node = node[part]
    if not isinstance(node, float) or not isinstance(value, str):
        return value
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value
    return repr(float(parsed)) if isinstance(parsed, int) and not isinstance(parsed, bool) else value


def merge_from_list(cfg: CN, opts: List[str]) -> None:
    """``cfg.merge_from_list(opts)``, reading keys under their old names (``RENAMED_KEYS``) as the new ones and
    integers given to float keys as floats."""
    opts = list(opts)
    for i in range(0, len(opts) - 1, 2):
        if opts[i] in RENAMED_KEYS:
            _warn_renamed(opts[i], RENAMED_KEYS[opts[i]], "command line")
            opts[i] = RENAMED_KEYS[opts[i]]
        opts[i + 1] = _float_literal(cfg, opts[i], opts[i + 1])
    cfg.merge_from_list(opts)
