"""What a candidate's fitness depends on besides ``SEARCH.*``, recorded in the search state so that a resume never
ranks candidates scored under other rules together with the saved ones.

A search's fingerprint (compared entry by entry on ``--resume``:
:func:`~detnas_d2.search.store.check_same_settings`) holds its ``SEARCH.*`` settings and, from here: for a one-shot
search the SHA-256 of the ``MODEL.WEIGHTS`` file (a supernet retrained into the same path is another supernet; a proxy
search records the path it trains from), every ``MODEL.*``, ``INPUT.*``, ``TEST.*`` and ``DATASETS.*`` value, and the
identity of the search dataset (its images and boxes).
"""

import functools
import hashlib
import json
import os
from typing import Any, Dict

from detectron2.data import DatasetCatalog

#: config sections whose values change a candidate's fitness (the model, its input, its test settings, the data)
FINGERPRINT_SECTIONS = ("MODEL", "INPUT", "TEST", "DATASETS")
#: keys of those sections that change no fitness: where the model runs, what a training evaluates and when
IGNORED_KEYS = ("MODEL.DEVICE", "MODEL.WEIGHTS", "TEST.EVAL_PERIOD", "DATASETS.TEST")


def _flatten(node, prefix: str) -> Dict[str, Any]:
    """``{"A.B.C": value}`` of every leaf of a config node."""
    flat = {}
    for key, value in node.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file (cached by path, size and modification time: a search builds its runner twice)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_identity(path: str) -> str:
    """``sha256:<hex>`` of the ``MODEL.WEIGHTS`` file, or the value itself when it names no local file."""
    if not path or not os.path.isfile(path):
        return path
    stat = os.stat(path)
    return "sha256:" + _file_sha256(os.path.realpath(path), stat.st_size, stat.st_mtime_ns)


def dataset_identity(name: str) -> str:
    """``<images> images, sha256:<hex>`` of a registered dataset: its image file names, sizes and boxes."""
    records = DatasetCatalog.get(name)
    content = [
        [
            os.path.basename(str(record.get("file_name", ""))),
            record.get("height"),
            record.get("width"),
            sorted(
                [[float(v) for v in a["bbox"]], int(a.get("bbox_mode", 0)), a.get("category_id")]
                for a in record.get("annotations", [])
            ),
        ]
        for record in records
    ]
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()
    return f"{len(records)} images, sha256:{digest}"


def fitness_fingerprint(cfg, dataset_name: str, one_shot: bool) -> Dict[str, Any]:
    """The fingerprint entries that are not ``SEARCH.*`` (see the module docstring), JSON-serialisable."""
    settings = {
        key: value
        for section in FINGERPRINT_SECTIONS
        for key, value in _flatten(cfg[section], f"{section}.").items()
        if key not in IGNORED_KEYS
    }
    return {
        **settings,
        "MODEL.WEIGHTS": weights_identity(cfg.MODEL.WEIGHTS) if one_shot else cfg.MODEL.WEIGHTS,
        "search dataset": f"{dataset_name}: {dataset_identity(dataset_name)}",
    }
