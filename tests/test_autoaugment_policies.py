"""Published policies, the AutoAugment sampler, custom-policy validation errors and the policy search space."""

import json
import random

import numpy as np
import pytest
from detectron2.data import transforms as T

from detnas_d2.data.autoaugment import OPS, POLICIES, AutoAugment, AutoAugmentPolicySpace, resolve_policy
from detnas_d2.data.autoaugment.space import LEVEL_CHOICES, PROBABILITY_CHOICES, SEARCH_OPS


# ------------------------------------------------------------------------------------------------ published
def test_published_policies_shape_and_grid():
    assert sorted(POLICIES) == ["test", "v0", "v1", "v2", "v3"]
    assert [len(POLICIES[name]) for name in ("v0", "v1", "v2", "v3", "test")] == [5, 20, 15, 15, 1]
    assert POLICIES["v1"][:5] == POLICIES["v0"]
    assert all(len(sub) == 2 for name in ("v0", "v1", "v3", "test") for sub in POLICIES[name])
    assert sorted({len(sub) for sub in POLICIES["v2"]}) == [2, 3]
    for name, policy in POLICIES.items():
        for sub in policy:
            for op_name, prob, level in sub:
                assert op_name in OPS and prob in PROBABILITY_CHOICES and level in LEVEL_CHOICES, (name, op_name)
    # v2 / v3 use no bbox-only op; v0 and v1 only the 22 searched ops
    assert not any("Only_BBoxes" in op for name in ("v2", "v3") for sub in POLICIES[name] for op, _, _ in sub)
    assert all(op in SEARCH_OPS for name in ("v0", "v1") for sub in POLICIES[name] for op, _, _ in sub)


def test_policy_v0_is_the_papers():
    assert POLICIES["v0"] == (
        (("TranslateX_BBox", 0.6, 4), ("Equalize", 0.8, 10)),
        (("TranslateY_Only_BBoxes", 0.2, 2), ("Cutout", 0.8, 8)),
        (("Sharpness", 0.0, 8), ("ShearX_BBox", 0.4, 0)),
        (("ShearY_BBox", 1.0, 2), ("TranslateY_Only_BBoxes", 0.6, 6)),
        (("Rotate_BBox", 0.6, 10), ("Color", 1.0, 6)),
    )
    assert POLICIES["test"] == ((("TranslateX_BBox", 1.0, 4), ("Equalize", 1.0, 10)),)
    assert POLICIES["v2"][10] == (("Rotate_BBox", 0.6, 10), ("BBox_Cutout", 1.0, 4), ("Cutout", 0.2, 8))
    assert POLICIES["v3"][0] == (("Posterize", 0.8, 2), ("TranslateX_BBox", 1.0, 8))


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_published_policy_runs(name):
    np.random.seed(0)
    rng = np.random.RandomState(0)
    augmentation = AutoAugment(name, image_format="BGR")
    for _ in range(40):
        image = rng.randint(0, 256, (48, 64, 3)).astype(np.uint8)
        boxes = np.array([[4.0, 5.0, 30.0, 40.0], [20.0, 10.0, 63.0, 47.0]])
        aug_input = T.AugInput(image, boxes=boxes)
        augmentation(aug_input)
        out = aug_input.boxes
        assert aug_input.image.shape == (48, 64, 3) and aug_input.image.dtype == np.uint8 and out.shape == (2, 4)
        assert (out >= 0).all() and (out[:, 0::2] <= 64).all() and (out[:, 1::2] <= 48).all()
        assert (out[:, 2:] >= out[:, :2]).all()


# ------------------------------------------------------------------------------------------------ sampling
def test_sub_policy_is_chosen_uniformly():
    np.random.seed(1)
    image = np.full((8, 8, 3), 200, dtype=np.uint8)
    # sub-policy 0 inverts (Solarize threshold 0), sub-policy 1 posterizes to 1 bit (200 -> 128)
    augmentation = AutoAugment([[("Solarize", 1.0, 0)], [("Posterize", 1.0, 0)], [("Brightness", 1.0, 0)]])
    outcomes = [int(augmentation.get_transform(image).apply_image(image)[0, 0, 0]) for _ in range(3000)]
    counts = {value: outcomes.count(value) / len(outcomes) for value in set(outcomes)}
    assert set(counts) == {55, 128, 20}  # 255 - 200, 200 & 0x80, int(0.1 * 200)
    assert all(abs(share - 1 / 3) < 0.04 for share in counts.values())


def test_ops_run_in_order_with_their_probabilities():
    np.random.seed(2)
    image = np.full((4, 4, 3), 200, dtype=np.uint8)
    # Solarize(thr 0) then Posterize(1 bit): 200 -> 55 -> 0; the other order: 200 -> 128 -> 127
    assert (
        AutoAugment([[("Solarize", 1.0, 0), ("Posterize", 1.0, 0)]]).get_transform(image).apply_image(image)[0, 0, 0]
        == 0
    )
    assert (
        AutoAugment([[("Posterize", 1.0, 0), ("Solarize", 1.0, 0)]]).get_transform(image).apply_image(image)[0, 0, 0]
        == 127
    )
    sometimes = AutoAugment([[("Solarize", 0.3, 0)]])
    fired = np.mean([sometimes.get_transform(image).apply_image(image)[0, 0, 0] == 55 for _ in range(3000)])
    assert abs(fired - 0.3) < 0.03


def test_random_sign_is_drawn_per_application():
    np.random.seed(3)
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    augmentation = AutoAugment([[("TranslateX_BBox", 1.0, 1)]])  # 25 px either way
    shifts = set()
    for _ in range(200):
        transform = augmentation.get_transform(image, np.array([[10.0, 2.0, 20.0, 8.0]])).transforms[0]
        shifts.add(transform.pixels)
    assert shifts == {25.0, -25.0}
    assert augmentation.sub_policies[0].augs[0].level == 1  # the configured level is never mutated


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "policy,message",
    [
        ("v9", "unknown AutoAugment policy 'v9'; known policies: v0, v1, v2, v3, test"),
        ([], "the AutoAugment policy is empty"),
        ([[("Equalize", 0.5, 3)], []], "sub-policy 1 is empty"),
        ([("Equalize", 0.5, 3)], "sub-policy 0, op 0: expected an (op, probability, level) triple, got 'Equalize'"),
        ([[("Equalize", 0.5)]], "sub-policy 0, op 0: expected an (op, probability, level) triple"),
        (
            [[("Equalize", 0.5, 3), ("Invert", 0.5, 3)]],
            "sub-policy 0, op 1: unknown op 'Invert'; valid ops: AutoContrast, Equalize",
        ),
        ([[("Equalize", 1.2, 3)]], "sub-policy 0, op 0 (Equalize): probability 1.2 is outside [0, 1]"),
        ([[("Equalize", -0.1, 3)]], "probability -0.1 is outside [0, 1]"),
        ([[("Equalize", "high", 3)]], "probability must be a number in [0, 1], got 'high'"),
        ([[("Rotate_BBox", 0.5, 11)]], "sub-policy 0, op 0 (Rotate_BBox): level 11 is outside 0..10"),
        ([[("Rotate_BBox", 0.5, -1)]], "level -1 is outside 0..10"),
        ([[("Rotate_BBox", 0.5, 2.5)]], "level must be an integer in 0..10, got 2.5"),
        (42, "an AutoAugment policy must be a list of sub-policies, got 42"),
    ],
)
def test_bad_policies_raise_value_error(policy, message):
    with pytest.raises(ValueError) as error:
        AutoAugment(policy)
    assert message in str(error.value)


def test_unknown_op_message_lists_all_valid_ops():
    with pytest.raises(ValueError) as error:
        resolve_policy([[("Shear", 0.5, 3)]])
    assert all(name in str(error.value) for name in OPS)


def test_custom_policy_is_canonicalised():
    assert resolve_policy([[["Equalize", 1, 3]], (("Cutout", 0.5, np.int64(4)),)]) == (
        (("Equalize", 1.0, 3),),
        (("Cutout", 0.5, 4),),
    )
    with pytest.raises(ValueError, match="box_mode must be one of"):
        AutoAugment("v0", box_mode="clip")


# ------------------------------------------------------------------------------------------------ space
def test_space_sample_is_valid_json_and_round_trips():
    space = AutoAugmentPolicySpace()
    rng = random.Random(0)
    for _ in range(50):
        arch = space.sample(rng)
        assert len(arch) == 5 and all(len(sub) == 2 for sub in arch)
        assert json.loads(json.dumps(arch)) == arch
        assert space.decode(space.encode(arch)) == arch
        for sub in arch:
            for op_name, prob, level in sub:
                assert op_name in SEARCH_OPS and prob in PROBABILITY_CHOICES and level in LEVEL_CHOICES
        AutoAugment(space.to_policy(arch))
    assert len(SEARCH_OPS) == 22 and len(PROBABILITY_CHOICES) == 6 and len(LEVEL_CHOICES) == 6


def test_space_canonical_form_sorts_unordered_sub_policies():
    space = AutoAugmentPolicySpace(num_sub_policies=2, ops_per_sub_policy=2)
    a = [[["Rotate_BBox", 0.6, 10], ["Color", 1.0, 6]], [["Equalize", 0.8000000000001, 10], ["Cutout", 0.2, 2]]]
    b = [a[1], a[0]]
    assert space.encode(a) == space.encode(b)
    assert space.validate(a) == [
        [["Equalize", 0.8, 10], ["Cutout", 0.2, 2]],
        [["Rotate_BBox", 0.6, 10], ["Color", 1.0, 6]],
    ]
    assert space.to_policy(a)[1] == [("Rotate_BBox", 0.6, 10), ("Color", 1.0, 6)]


def test_space_mutate_and_crossover():
    space = AutoAugmentPolicySpace()
    rng = random.Random(1)
    parent = space.sample(rng)
    assert space.mutate(parent, rng, 0.0) == parent
    mutants = [space.mutate(parent, rng, 1.0) for _ in range(5)]
    assert all(space.validate(m) == m for m in mutants) and any(m != parent for m in mutants)
    assert space.crossover(parent, parent, rng) == parent
    # one sub-policy: no re-sorting, so every gene of the child comes from a parent at the same position
    single = AutoAugmentPolicySpace(num_sub_policies=1, ops_per_sub_policy=3)
    a = [[["Color", 0.0, 0], ["Cutout", 0.2, 2], ["Equalize", 0.4, 4]]]
    b = [[["Rotate_BBox", 1.0, 10], ["Sharpness", 0.8, 8], ["Solarize", 0.6, 6]]]
    seen = set()
    for _ in range(200):
        child = single.crossover(a, b, rng)
        for j in range(3):
            for k in range(3):
                assert child[0][j][k] in (a[0][j][k], b[0][j][k])
                seen.add((j, k, child[0][j][k] == a[0][j][k]))
    assert len(seen) == 18  # both parents contribute at every position


@pytest.mark.parametrize(
    "arch,message",
    [
        ([], "a policy architecture must be a list of 5 sub-policies"),
        ([[["Color", 0.2, 2]]] * 5, "sub-policy 0 must be a list of 2 [op, probability, level] entries"),
        ([[["Color", 0.2, 2], ["Color", 0.2]]] * 5, "sub-policy 0, op 1: expected [op, probability, level]"),
        (
            [[["Color", 0.2, 2], ["AutoContrast", 0.2, 2]]] * 5,
            "sub-policy 0, op 1: op 'AutoContrast' is not in this space",
        ),
        ([[["Color", 0.3, 2], ["Color", 0.2, 2]]] * 5, "sub-policy 0, op 0: probability 0.3 is not one of [0.0, 0.2"),
        ([[["Color", 0.2, 3], ["Color", 0.2, 2]]] * 5, "sub-policy 0, op 0: level 3 is not one of [0, 2, 4, 6, 8, 10]"),
        ([[["Color", 0.2, 2.0], ["Color", 0.2, 2]]] * 5, "level 2.0 is not one of"),
    ],
)
def test_space_validate_errors(arch, message):
    with pytest.raises(ValueError) as error:
        AutoAugmentPolicySpace().validate(arch)
    assert message in str(error.value)


def test_space_constructor_errors():
    with pytest.raises(ValueError, match="num_sub_policies must be a positive integer"):
        AutoAugmentPolicySpace(num_sub_policies=0)
    with pytest.raises(ValueError, match="op_names must be distinct AutoAugment ops"):
        AutoAugmentPolicySpace(op_names=("Equalize", "Invert"))
    with pytest.raises(ValueError, match="level 12 is outside"):
        AutoAugmentPolicySpace(levels=(0, 12))
