"""Architecture encodings, their validation, the named-architecture registry and the SearchSpace."""

import random

import numpy as np
import pytest

from detnas_d2.space.backbone import (
    SPACE_LAYOUTS,
    BackboneLayout,
    BackboneSearchSpace,
    format_architecture,
    get_architecture,
    list_architectures,
    parse_architecture,
    register_architecture,
)

# Published encodings, transcribed from the released Megvii code (DetNAS, ShuffleNet-Series,
# SinglePathOneShot) in stage-separated comma form.
PUBLISHED = {
    "COCO-FPN-300M": ("small", "2,1,2,0 / 2,1,1,2 / 3,3,1,3,0,0,3,1 / 3,1,3,2"),
    "COCO-RetinaNet-300M": ("small", "2,3,1,1 / 3,2,1,3 / 3,1,1,1,3,3,2,0 / 3,3,3,3"),
    "VOC-FPN-300M": ("small", "2,1,0,3 / 1,3,0,3 / 2,0,1,1,3,3,3,3 / 3,3,3,1"),
    "VOC-RetinaNet-300M": ("small", "1,3,0,0 / 2,3,3,3 / 2,3,3,3,3,2,2,0 / 2,3,1,1"),
    "DetNASNet": (
        "large",
        "0,0,3,1,2,1,0,2 / 0,3,1,2,3,3,2,0 / 2,1,1,3,2,0,2,2,2,1,3,1,0,3,3,3 / 1,3,3,3,3,3,3,3",
    ),
    "DetNASNet-3.8G": (
        "large",
        "0,0,3,1,2,1,0,2 / 0,3,1,2,3,3,2,0 / 2,1,1,3,2,0,2,2,2,1,3,1,0,3,3,3 / 1,3,3,3,3,3,3,3",
    ),
    "SPOS": ("small", "2,1,0,1 / 2,0,2,0 / 2,0,2,3,0,0,0,0 / 3,2,3,3"),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_architectures_are_registered_with_their_encoding_and_space(name):
    space, text = PUBLISHED[name]
    entry = get_architecture(name)
    expected = [int(v) for v in text.replace("/", ",").split(",")]
    assert list(entry.encoding) == expected
    assert entry.space == space
    assert len(entry.encoding) == {"small": 20, "large": 40}[space]


def test_named_architectures_fix_their_channel_layout():
    assert get_architecture("COCO-FPN-300M").layout == SPACE_LAYOUTS["small"]
    assert get_architecture("DetNASNet").layout == SPACE_LAYOUTS["large"]
    wide = get_architecture("DetNASNet-3.8G").layout
    assert wide.stem_channels == 72
    assert wide.stage_channels == (172, 432, 864, 1728)
    assert wide.stage_depths == (8, 8, 16, 8)
    assert SPACE_LAYOUTS["small"].stage_channels == (64, 160, 320, 640)
    assert SPACE_LAYOUTS["small"].stem_channels == 16
    assert SPACE_LAYOUTS["large"].stage_channels == (96, 240, 480, 960)
    assert SPACE_LAYOUTS["large"].stem_channels == 48


def test_all_input_forms_resolve_to_the_same_encoding():
    expected = get_architecture("COCO-FPN-300M").encoding
    forms = [
        "COCO-FPN-300M",
        "2120-2112-33130031-3132",
        "21202112331300313132",
        "2,1,2,0,2,1,1,2,3,3,1,3,0,0,3,1,3,1,3,2",
        "2 1 2 0 / 2 1 1 2 / 3 3 1 3 0 0 3 1 / 3 1 3 2",
        list(expected),
        tuple(expected),
        [np.int64(v) for v in expected],
    ]
    for form in forms:
        resolved = parse_architecture(form)
        assert resolved.encoding == expected, form
        assert resolved.space == "small"
    assert format_architecture(expected) == "2120-2112-33130031-3132"
    assert str(parse_architecture("COCO-FPN-300M")) == "COCO-FPN-300M (2120-2112-33130031-3132)"


def test_space_is_inferred_from_length_or_checked():
    assert parse_architecture([0] * 40).space == "large"
    with pytest.raises(ValueError, match="has 20 choices but its space needs exactly 40"):
        parse_architecture([0] * 20, space="large")
    with pytest.raises(ValueError, match="belongs to the large space, not the small space"):
        parse_architecture("DetNASNet", space="small")
    with pytest.raises(ValueError, match=r"has 21 choices; expected 20 \(small space\), 40 \(large space\)"):
        parse_architecture([0] * 21)
    with pytest.raises(ValueError, match="unknown backbone space 'medium'"):
        parse_architecture([0] * 20, space="medium")


@pytest.mark.parametrize(
    "arch, message",
    [
        ([0] * 19, "has 19 choices but its space needs exactly 20"),
        ([0] * 5 + [4] + [0] * 14, "position 5 has value 4; allowed choices are 0..3"),
        ([0] * 7 + [-1] + [0] * 12, "position 7 has value -1; allowed choices are 0..3"),
        ([0] * 2 + [1.0] + [0] * 17, "position 2 has value 1.0 of type float; expected an int in 0..3"),
        ([0] * 3 + ["1"] + [0] * 16, "position 3 has value '1' of type str"),
        ([True] + [0] * 19, "position 0 has value True of type bool"),
        ("2120-2112-33130031-313", "has 19 choices but its space needs exactly 20"),
        ("2120-2112-33130031-3134", "position 19 has value 4"),
        ("2,1,2,0,2,1,1,2,3,3,1,3,0,0,3,1,3,1,3,12", "position 19 has value 12"),
        ("2,1,x,0", r"token 2 \('x'\) is not an integer"),
        ("COCO-FPN-301M", "character 'C' at index 0 is neither a digit nor '-'.*registered: .*COCO-FPN-300M"),
        ("", "architecture string is empty"),
        ({"arch": 1}, "must be a list of ints, a string or a registered name, got dict"),
        (7, "got int"),
    ],
)
def test_invalid_architectures_raise_value_error_naming_the_problem(arch, message):
    with pytest.raises(ValueError, match=message):
        parse_architecture(arch, space="small")


def test_registering_custom_architectures():
    name = "test-custom-arch"
    entry = register_architecture(name, "3333-2222-11110000-3210", "small", source="test")
    try:
        assert parse_architecture(name).encoding == entry.encoding
        assert name in list_architectures()
        with pytest.raises(ValueError, match="already registered"):
            register_architecture(name, [0] * 20, "small")
        register_architecture(name, [1] * 20, "small", overwrite=True)
        assert parse_architecture(name).encoding == (1,) * 20
        wide = BackboneLayout((4, 4, 8, 4), (128, 320, 640, 1280), stem_channels=32, head_channels=1024)
        assert register_architecture(name, [1] * 20, "small", layout=wide, overwrite=True).layout == wide
    finally:
        from detnas_d2.space import backbone

        backbone._REGISTRY.pop(name)
    with pytest.raises(ValueError, match="stage depths"):
        register_architecture("x-wrong-depths", [0] * 20, "small", layout=SPACE_LAYOUTS["large"])
    with pytest.raises(ValueError, match="position 0 has value 9"):
        register_architecture("x-bad-value", [9] + [0] * 19, "small")
    with pytest.raises(ValueError, match="without separators or only digits"):
        register_architecture("2120", [0] * 20, "small")
    with pytest.raises(ValueError, match="positive multiple of 4"):
        odd_layout = BackboneLayout((4, 4, 8, 4), (66, 160, 320, 640), 16, 1024)
        register_architecture("x-odd", [0] * 20, "small", layout=odd_layout)
    assert "x-wrong-depths" not in list_architectures()


def test_width_multiplier_rounds_to_multiples_of_four():
    quarter = SPACE_LAYOUTS["small"].scaled(0.25)
    assert quarter.stage_channels == (16, 40, 80, 160)
    assert quarter.stem_channels == 4
    assert get_architecture("DetNASNet-3.8G").layout.scaled(0.5).stage_channels == (88, 216, 432, 864)  # 86 rounds up
    with pytest.raises(ValueError, match="width_mult must be a positive finite number"):
        SPACE_LAYOUTS["small"].scaled(0)


@pytest.mark.parametrize("space, length", [("small", 20), ("large", 40)])
def test_search_space_sample_is_uniform_valid_and_seeded(space, length):
    search_space = BackboneSearchSpace(space)
    archs = [search_space.sample(random.Random(seed)) for seed in range(200)]
    assert all(len(a) == length and set(a) <= {0, 1, 2, 3} for a in archs)
    assert search_space.sample(random.Random(3)) == archs[3]
    counts = np.bincount(np.array(archs).ravel(), minlength=4) / (200 * length)
    assert np.all(np.abs(counts - 0.25) < 0.03)


def test_search_space_mutation_redraws_each_gene_with_probability_p():
    space = BackboneSearchSpace("large")
    rng = random.Random(0)
    parent = [0] * 40
    assert space.mutate(parent, rng, 0.0) == parent
    # p = 1: every gene is redrawn uniformly, so about a quarter keep the parent's value
    children = np.array([space.mutate(parent, rng, 1.0) for _ in range(100)])
    assert abs((children == 0).mean() - 0.25) < 0.03
    # p = 0.1: a gene changes with probability 0.1 * 3/4
    children = np.array([space.mutate(parent, rng, 0.1) for _ in range(300)])
    assert abs((children != 0).mean() - 0.075) < 0.015
    assert space.mutate("DetNASNet", rng, 0.0) == list(get_architecture("DetNASNet").encoding)
    with pytest.raises(ValueError, match="mutation probability"):
        space.mutate(parent, rng, 1.5)
    with pytest.raises(ValueError, match="has 20 choices but its space needs exactly 40"):
        space.mutate([0] * 20, rng, 0.1)


def test_search_space_crossover_takes_each_gene_from_either_parent():
    space = BackboneSearchSpace("small")
    rng = random.Random(1)
    children = np.array([space.crossover([0] * 20, [3] * 20, rng) for _ in range(300)])
    assert set(np.unique(children)) == {0, 3}
    assert abs((children == 3).mean() - 0.5) < 0.03
    assert space.crossover([2] * 20, [2] * 20, rng) == [2] * 20


def test_search_space_validate_encode_decode_round_trip():
    space = BackboneSearchSpace("small")
    arch = space.validate("COCO-FPN-300M")
    assert arch == list(get_architecture("COCO-FPN-300M").encoding)
    key = space.encode("2120-2112-33130031-3132")
    assert key == space.encode(arch)
    assert space.decode(key) == arch
    assert hash(key) == hash(space.encode(tuple(arch)))
    with pytest.raises(ValueError, match="belongs to the large space"):
        space.validate("DetNASNet")
