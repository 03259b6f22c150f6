"""Weight inheritance: extract a fixed network's weights from a supernet checkpoint.

Supernet and fixed networks share parameter names (``<prefix>blocks.<i>.choices.<c>.*``), so the
subnet of an architecture is the supernet state dict restricted to ``c == arch[i]`` at every
position, plus the ``architecture`` buffer recording the encoding (fixed networks refuse to load
weights recorded for another architecture). Works on a raw supernet state dict (prefix "") and on
a detectron2 checkpoint ``{"model": state_dict, ...}`` (prefix ``backbone.bottom_up.body.`` or
``backbone.body.``); every key outside the choice blocks is kept unchanged.
"""

import re
from collections import OrderedDict
from typing import Any, Dict, Mapping

from ..nn.shufflenet import encode_arch_record
from ..space.backbone import parse_architecture, space_for_length

__all__ = ["extract_subnet_state_dict", "extract_subnet_checkpoint"]

_CHOICE_KEY = re.compile(r"^(?P<prefix>(?:.*\.)?)blocks\.(?P<position>\d+)\.choices\.(?P<choice>\d+)\.")
#: checkpoint entries that describe supernet training state and do not apply to the subnet
TRAINING_STATE_KEYS = ("optimizer", "scheduler", "iteration")


def extract_subnet_state_dict(state_dict: Mapping[str, Any], arch: Any, space: str | None = None) -> Dict[str, Any]:
    """The state dict of the fixed network of ``arch`` inherited from a supernet ``state_dict``.

    ``arch`` takes any encoding form; ``space`` defaults to the one implied by the number of block
    positions found. Every supernet found under a distinct prefix is reduced the same way.
    """
    positions: Dict[str, Dict[int, set]] = {}
    for key in state_dict:
        match = _CHOICE_KEY.match(key)
        if match:
            choices = positions.setdefault(match["prefix"], {}).setdefault(int(match["position"]), set())
            choices.add(int(match["choice"]))
    if not positions:
        raise ValueError("no supernet choice-block weights ('blocks.<i>.choices.<c>.') found in the state dict")
    encodings = {}
    for prefix, found in positions.items():
        num_positions = len(found)
        if sorted(found) != list(range(num_positions)):
            raise ValueError(f"supernet under prefix {prefix!r} has non-contiguous block positions {sorted(found)}")
        encoding = parse_architecture(arch, space=space or space_for_length(num_positions)).encoding
        if len(encoding) != num_positions:
            raise ValueError(
                f"architecture has {len(encoding)} choices but the supernet under prefix {prefix!r} "
                f"has {num_positions} block positions"
            )
        for position, choice in enumerate(encoding):
            if choice not in found[position]:
                raise ValueError(
                    f"position {position}: choice {choice} is not in the checkpoint under prefix {prefix!r} "
                    f"(it holds choices {sorted(found[position])}); is this a supernet checkpoint?"
                )
        encodings[prefix] = encoding
    subnet = OrderedDict()
    for key, value in state_dict.items():
        match = _CHOICE_KEY.match(key)
        if match and encodings[match["prefix"]][int(match["position"])] != int(match["choice"]):
            continue
        subnet[key] = value
    for prefix, encoding in encodings.items():
        subnet[prefix + "architecture"] = encode_arch_record(encoding)
    return subnet


def extract_subnet_checkpoint(checkpoint: Mapping[str, Any], arch: Any, space: str | None = None) -> Dict[str, Any]:
    """Like :func:`extract_subnet_state_dict` for a raw state dict or a ``{"model": ...}`` checkpoint.

    In the wrapped form the other top-level entries are kept, except the supernet's training
    state (optimizer, scheduler, iteration), which does not apply to the subnet.
    """
    if "model" in checkpoint and isinstance(checkpoint["model"], Mapping):
        converted = {k: v for k, v in checkpoint.items() if k not in TRAINING_STATE_KEYS}
        converted["model"] = extract_subnet_state_dict(checkpoint["model"], arch, space)
        return converted
    return extract_subnet_state_dict(checkpoint, arch, space)
