"""Published detection AutoAugment policies (v0-v3, test) and validation of custom policies.

A policy is a list of sub-policies; a sub-policy is a list of ``(op_name, probability, level)`` entries
applied in order. The tables are the reference code's (tensorflow/tpu autoaugment_utils.py).
"""

from typing import Sequence, Tuple, Union

from .ops import OPS, check_level, check_probability

Entry = Tuple[str, float, int]
Policy = Tuple[Tuple[Entry, ...], ...]

_POLICY_V0 = (
    (("TranslateX_BBox", 0.6, 4), ("Equalize", 0.8, 10)),
    (("TranslateY_Only_BBoxes", 0.2, 2), ("Cutout", 0.8, 8)),
    (("Sharpness", 0.0, 8), ("ShearX_BBox", 0.4, 0)),
    (("ShearY_BBox", 1.0, 2), ("TranslateY_Only_BBoxes", 0.6, 6)),
    (("Rotate_BBox", 0.6, 10), ("Color", 1.0, 6)),
)

_POLICY_V1 = _POLICY_V0 + (
    (("Color", 0.0, 0), ("ShearX_Only_BBoxes", 0.8, 4)),
    (("ShearY_Only_BBoxes", 0.8, 2), ("Flip_Only_BBoxes", 0.0, 10)),
    (("Equalize", 0.6, 10), ("TranslateX_BBox", 0.2, 2)),
    (("Color", 1.0, 10), ("TranslateY_Only_BBoxes", 0.4, 6)),
    (("Rotate_BBox", 0.8, 10), ("Contrast", 0.0, 10)),
    (("Cutout", 0.2, 2), ("Brightness", 0.8, 10)),
    (("Color", 1.0, 6), ("Equalize", 1.0, 2)),
    (("Cutout_Only_BBoxes", 0.4, 6), ("TranslateY_Only_BBoxes", 0.8, 2)),
    (("Color", 0.2, 8), ("Rotate_BBox", 0.8, 10)),
    (("Sharpness", 0.4, 4), ("TranslateY_Only_BBoxes", 0.0, 4)),
    (("Sharpness", 1.0, 4), ("SolarizeAdd", 0.4, 4)),
    (("Rotate_BBox", 1.0, 8), ("Sharpness", 0.2, 8)),
    (("ShearY_BBox", 0.6, 10), ("Equalize_Only_BBoxes", 0.6, 8)),
    (("ShearX_BBox", 0.2, 6), ("TranslateY_Only_BBoxes", 0.2, 10)),
    (("SolarizeAdd", 0.6, 8), ("Brightness", 0.8, 10)),
)

_POLICY_V2 = (
    (("Color", 0.0, 6), ("Cutout", 0.6, 8), ("Sharpness", 0.4, 8)),
    (("Rotate_BBox", 0.4, 8), ("Sharpness", 0.4, 2), ("Rotate_BBox", 0.8, 10)),
    (("TranslateY_BBox", 1.0, 8), ("AutoContrast", 0.8, 2)),
    (("AutoContrast", 0.4, 6), ("ShearX_BBox", 0.8, 8), ("Brightness", 0.0, 10)),
    (("SolarizeAdd", 0.2, 6), ("Contrast", 0.0, 10), ("AutoContrast", 0.6, 0)),
    (("Cutout", 0.2, 0), ("Solarize", 0.8, 8), ("Color", 1.0, 4)),
    (("TranslateY_BBox", 0.0, 4), ("Equalize", 0.6, 8), ("Solarize", 0.0, 10)),
    (("TranslateY_BBox", 0.2, 2), ("ShearY_BBox", 0.8, 8), ("Rotate_BBox", 0.8, 8)),
    (("Cutout", 0.8, 8), ("Brightness", 0.8, 8), ("Cutout", 0.2, 2)),
    (("Color", 0.8, 4), ("TranslateY_BBox", 1.0, 6), ("Rotate_BBox", 0.6, 6)),
    (("Rotate_BBox", 0.6, 10), ("BBox_Cutout", 1.0, 4), ("Cutout", 0.2, 8)),
    (("Rotate_BBox", 0.0, 0), ("Equalize", 0.6, 6), ("ShearY_BBox", 0.6, 8)),
    (("Brightness", 0.8, 8), ("AutoContrast", 0.4, 2), ("Brightness", 0.2, 2)),
    (("TranslateY_BBox", 0.4, 8), ("Solarize", 0.4, 6), ("SolarizeAdd", 0.2, 10)),
    (("Contrast", 1.0, 10), ("SolarizeAdd", 0.2, 8), ("Equalize", 0.2, 4)),
)

_POLICY_V3 = (
    (("Posterize", 0.8, 2), ("TranslateX_BBox", 1.0, 8)),
    (("BBox_Cutout", 0.2, 10), ("Sharpness", 1.0, 8)),
    (("Rotate_BBox", 0.6, 8), ("Rotate_BBox", 0.8, 10)),
    (("Equalize", 0.8, 10), ("AutoContrast", 0.2, 10)),
    (("SolarizeAdd", 0.2, 2), ("TranslateY_BBox", 0.2, 8)),
    (("Sharpness", 0.0, 2), ("Color", 0.4, 8)),
    (("Equalize", 1.0, 8), ("TranslateY_BBox", 1.0, 8)),
    (("Posterize", 0.6, 2), ("Rotate_BBox", 0.0, 10)),
    (("AutoContrast", 0.6, 0), ("Rotate_BBox", 1.0, 6)),
    (("Equalize", 0.0, 4), ("Cutout", 0.8, 10)),
    (("Brightness", 1.0, 2), ("TranslateY_BBox", 1.0, 6)),
    (("Contrast", 0.0, 2), ("ShearY_BBox", 0.8, 0)),
    (("AutoContrast", 0.8, 10), ("Contrast", 0.2, 10)),
    (("Rotate_BBox", 1.0, 10), ("Cutout", 1.0, 10)),
    (("SolarizeAdd", 0.8, 6), ("Equalize", 0.8, 8)),
)

_POLICY_TEST = ((("TranslateX_BBox", 1.0, 4), ("Equalize", 1.0, 10)),)

#: policy name -> policy; "v0" is the paper's policy
POLICIES = {"v0": _POLICY_V0, "v1": _POLICY_V1, "v2": _POLICY_V2, "v3": _POLICY_V3, "test": _POLICY_TEST}


def validate_policy(policy: Sequence) -> Policy:
    """Return ``policy`` as nested tuples of ``(str, float, int)``, or raise ValueError naming the bad entry."""
    if isinstance(policy, (str, bytes)) or not isinstance(policy, Sequence):
        raise ValueError(f"an AutoAugment policy must be a list of sub-policies, got {policy!r}")
    if len(policy) == 0:
        raise ValueError("the AutoAugment policy is empty; expected a non-empty list of sub-policies")
    validated = []
    for i, sub_policy in enumerate(policy):
        if isinstance(sub_policy, (str, bytes)) or not isinstance(sub_policy, Sequence):
            raise ValueError(f"sub-policy {i} must be a list of (op, probability, level) entries, got {sub_policy!r}")
        if len(sub_policy) == 0:
            raise ValueError(f"sub-policy {i} is empty; expected a non-empty list of (op, probability, level) entries")
        validated.append(tuple(_validate_entry(entry, f"sub-policy {i}, op {j}") for j, entry in enumerate(sub_policy)))
    return tuple(validated)


def _validate_entry(entry, where: str) -> Entry:
    if isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence) or len(entry) != 3:
        raise ValueError(f"{where}: expected an (op, probability, level) triple, got {entry!r}")
    name, prob, level = entry
    if name not in OPS:
        raise ValueError(f"{where}: unknown op {name!r}; valid ops: {', '.join(OPS)}")
    try:
        return (name, check_probability(prob), check_level(level))
    except ValueError as error:
        raise ValueError(f"{where} ({name}): {error}") from None


def resolve_policy(policy: Union[str, Sequence]) -> Policy:
    """A published policy by name (``v0``, ``v1``, ``v2``, ``v3``, ``test``) or a validated custom policy."""
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise ValueError(f"unknown AutoAugment policy {policy!r}; known policies: {', '.join(POLICIES)}")
        return POLICIES[policy]
    return validate_policy(policy)
