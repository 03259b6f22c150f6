"""Export a searched architecture: a config that builds it as a fixed network, and its inherited weights.

``best_config.yaml`` is the search config with the one-shot parts fixed to the best architecture and
``MODEL.WEIGHTS`` pointing at ``best_weights.pth`` (the supernet's weights for that path, BN statistics
recalibrated as in the search), so ``train_net.py --config-file best_config.yaml --eval-only`` reproduces the
search's score and training from it retrains the architecture. Its ``OUTPUT_DIR`` is the fresh folder
``<search OUTPUT_DIR>/retrain``, so a retraining never writes over the search's files. To drop the backbone into
another detectron2 config, copy its ``MODEL.DETNAS`` block (the README shows how).
"""

import io
import os

import torch

from ..engine.supernet_eval import PathTester
from ..parts import get_part, part_archs
from ..parts.model import searchable_parts, set_model_arch, unwrap
from ..utils.io import atomic_write

CONFIG_FILE = "best_config.yaml"
WEIGHTS_FILE = "best_weights.pth"
#: sub-folder of the search's OUTPUT_DIR that the exported config trains into
RETRAIN_DIR = "retrain"


def exported_config(out, output_dir: str):
    """``out`` (an exported config) training into ``output_dir``/``retrain``, not into the search folder."""
    out.OUTPUT_DIR = os.path.join(os.path.abspath(output_dir), RETRAIN_DIR)
    return out


def fixed_config(cfg, model, arch, weights_path: str):
    """A copy of ``cfg`` that builds ``arch`` as a fixed network initialised from ``weights_path``."""
    out = cfg.clone()
    out.defrost()
    for name, part_arch in part_archs(searchable_parts(model), arch).items():
        get_part(name).write_config(out, part_arch)
    out.MODEL.WEIGHTS = weights_path
    out.SUPERNET.EVAL.RECALIBRATE_FIXED = False  # the exported statistics are already recalibrated
    return out


def inherited_state_dict(model, arch) -> dict:
    """The fixed network's weights: the supernet's parameters and current BN statistics on ``arch``'s path."""
    state = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    for name, part_arch in part_archs(searchable_parts(model), arch).items():
        state = get_part(name).inherited_weights(state, part_arch)
    return state


def export_best(cfg, model, arch, recalibrate: PathTester, output_dir: str) -> dict:
    """Write ``best_config.yaml`` and ``best_weights.pth`` for ``arch`` into ``output_dir``; return their paths."""
    set_model_arch(model, arch)
    if recalibrate.num_batches > 0:
        recalibrate.recalibrate()
    weights_path = os.path.join(output_dir, WEIGHTS_FILE)
    buffer = io.BytesIO()
    torch.save({"model": inherited_state_dict(model, arch), "__author__": "detnas_d2 search export"}, buffer)
    atomic_write(weights_path, buffer.getvalue())
    config_path = os.path.join(output_dir, CONFIG_FILE)
    atomic_write(config_path, exported_config(fixed_config(cfg, model, arch, weights_path), output_dir).dump())
    return {"config": config_path, "weights": weights_path}
