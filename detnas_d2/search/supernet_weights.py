"""The search's check of its supernet weights: ``MODEL.WEIGHTS`` must provide every tensor of the one-shot model.

A search of a random supernet, of a stock ResNet checkpoint or of a supernet of another width would otherwise
run to the end (detectron2 only warns about tensors it skips) and export a meaningless winner.
"""

from ..modeling.checkpoint import DetNASCheckpointer
from ..parts.model import searchable_parts, unwrap

#: tensors named in the error of an incomplete checkpoint
SHOWN_KEYS = 5


class _RecordingCheckpointer(DetNASCheckpointer):
    """DetNASCheckpointer that keeps what loading left unmatched in ``incompatible``."""

    incompatible = None

    def _load_model(self, checkpoint):
        self.incompatible = super()._load_model(checkpoint)
        return self.incompatible


def _expected_keys(model) -> list:
    """The model's state-dict keys a checkpoint must provide (BN step counters are optional, as in fvcore)."""
    return [key for key in model.state_dict() if not key.endswith("num_batches_tracked")]


def _part_prefixes(model) -> tuple:
    """State-dict prefixes of the model's one-shot parts, e.g. ``("backbone.bottom_up.",)``."""
    parts = list(searchable_parts(model).values())
    return tuple(f"{name}." for name, module in unwrap(model).named_modules() if any(module is p for p in parts))


def _missing_cause(model, prefixes, missing, incorrect_shapes) -> str:
    """The likely reason why a checkpoint lacks ``missing`` tensors of the one-shot model (parts at ``prefixes``)."""
    in_parts = {key for key in _expected_keys(model) if key.startswith(prefixes)}
    reshaped = [entry for entry in incorrect_shapes if entry[0] in in_parts] or incorrect_shapes
    if in_parts and in_parts <= set(missing) and not in_parts & {entry[0] for entry in reshaped}:
        return (
            "it holds no weights of the supernet (a stock ResNet or other detectron2 checkpoint?); search the "
            "supernet that train_net.py fine-tuned on detection (e.g. configs/supernet_fpn.yaml)"
        )
    if reshaped:
        key, found, expected = reshaped[0]
        return (
            f"{len(incorrect_shapes)} tensors have other shapes (e.g. {key}: {tuple(found)} in the checkpoint, "
            f"{tuple(expected)} in the model): a supernet of another width; set MODEL.DETNAS.WIDTH_MULT (and the "
            "neck's channels) as in the config it was trained with"
        )
    if not in_parts & set(missing):
        return (
            "it holds the supernet but not the detector around it (a classification-pretrained supernet?); "
            "fine-tune it on detection first (e.g. configs/supernet_fpn.yaml)"
        )
    return "it holds only part of the supernet (another MODEL.DETNAS.SPACE, or another model's checkpoint?)"


def load_supernet_weights(cfg, model) -> None:
    """Load ``MODEL.WEIGHTS`` into the one-shot model; fail, naming the first missing tensors and the likely cause,
    unless the checkpoint provides every tensor of the model."""
    path = cfg.MODEL.WEIGHTS
    if not path:
        raise ValueError(
            "MODEL.WEIGHTS is empty: the search would score paths of a randomly initialised supernet. "
            "Set MODEL.WEIGHTS to the supernet fine-tuned on detection (train_net.py with e.g. "
            "configs/supernet_fpn.yaml writes OUTPUT_DIR/model_final.pth)"
        )
    checkpointer = _RecordingCheckpointer(model)
    checkpointer.load(path)
    incompatible = checkpointer.incompatible
    missing = list(incompatible.missing_keys) if incompatible is not None else []
    if missing:
        prefixes = _part_prefixes(model)
        shown = sorted(missing, key=lambda key: not key.startswith(prefixes))[:SHOWN_KEYS]  # the supernet's first
        raise ValueError(
            f"MODEL.WEIGHTS {path} does not provide {len(missing)} of the {len(_expected_keys(model))} tensors of the "
            f"one-shot model (first: {', '.join(shown)}): "
            f"{_missing_cause(model, prefixes, missing, incompatible.incorrect_shapes)}"
        )
