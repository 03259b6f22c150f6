"""NAS-FPN neck encodings: the published architecture in all accepted forms, validation errors, registry, space."""

import json
import random

import pytest

from detnas_d2.space.base import SearchSpace
from detnas_d2.space.neck import (
    LEVELS,
    NASFPN_ARCH,
    NeckSearchSpace,
    parse_compact_neck_arch,
    register_neck_arch,
    registered_neck_archs,
    resolve_neck_arch,
    validate_neck_arch,
)

# the published block (Ghiasi et al., CVPR 2019, Fig. 7f), written out independently of the module's constant
PUBLISHED = [
    [1, 3, 4, "attention"],
    [1, 5, 4, "sum"],
    [0, 6, 3, "sum"],
    [6, 7, 4, "sum"],
    [7, 8, 5, "attention"],
    [6, 9, 7, "attention"],
    [9, 10, 6, "attention"],
]
PUBLISHED_COMPACT = "3,1,1,3 | 3,0,1,5 | 4,0,0,6 | 3,0,6,7 | 2,1,7,8 | 0,1,6,9 | 1,1,9,10"


def test_published_architecture_in_all_accepted_forms():
    assert NASFPN_ARCH == PUBLISHED
    assert resolve_neck_arch("NAS-FPN") == PUBLISHED
    assert "NAS-FPN" in registered_neck_archs()
    assert parse_compact_neck_arch(PUBLISHED_COMPACT) == PUBLISHED
    assert resolve_neck_arch(PUBLISHED_COMPACT) == PUBLISHED
    assert resolve_neck_arch(json.dumps(PUBLISHED)) == PUBLISHED
    int_ops = [(a, b, level, 1 if op == "attention" else 0) for a, b, level, op in PUBLISHED]
    assert validate_neck_arch(int_ops) == PUBLISHED


def test_resolved_arch_is_a_copy():
    cells = resolve_neck_arch("NAS-FPN")
    cells[0][0] = 2
    assert resolve_neck_arch("NAS-FPN") == PUBLISHED


def _with_cell(index, cell):
    """The published architecture with cell ``index`` replaced."""
    arch = [list(c) for c in PUBLISHED]
    arch[index] = cell
    return arch


@pytest.mark.parametrize(
    "arch, message",
    [
        (
            _with_cell(2, [0, 7, 3, "sum"]),
            "neck cell 2: input2 = 7 is out of range; this cell may read pool nodes 0..6 (0-4 = inputs P3-P7",
        ),
        (_with_cell(0, [-1, 3, 4, "sum"]), "neck cell 0: input1 = -1 is out of range"),
        (_with_cell(3, [6, 6, 4, "sum"]), "neck cell 3: both inputs are node 6; the two inputs must differ"),
        (_with_cell(6, [9, 10, 5, "attention"]), "neck cell 6: output level P5 is already produced by output cell 4"),
        (_with_cell(1, [1, 5, 3, "sum"]), "neck cell 1: intermediate cell at forbidden level P3"),
        (_with_cell(4, [7, 8, 5]), "neck cell 4: expected [input1, input2, level, op] (4 entries), got 3 entries"),
        (_with_cell(4, "7,8,5,sum"), "neck cell 4: expected [input1, input2, level, op] (4 entries), got a str"),
        (_with_cell(1, ["1", 5, 4, "sum"]), "neck cell 1: input1 must be an int pool index, got '1'"),
        (_with_cell(1, [1, True, 4, "sum"]), "neck cell 1: input2 must be an int pool index, got True"),
        (_with_cell(5, [6, 9, 8, "sum"]), "neck cell 5: level 8 is invalid; allowed levels are ints 3..7"),
        (_with_cell(5, [6, 9, 7, "max"]), "neck cell 5: unknown op 'max'; allowed: 'sum', 'attention'"),
        (_with_cell(5, [6, 9, 7, 2]), "neck cell 5: unknown op 2"),
        (PUBLISHED[:4], "neck architecture has 4 cells; at least 5 are needed"),
    ],
)
def test_invalid_cells_raise_value_error_naming_cell_and_problem(arch, message):
    with pytest.raises(ValueError) as error:
        validate_neck_arch(arch)
    assert message in str(error.value)


def test_invalid_specs_raise_value_error():
    with pytest.raises(ValueError, match="unknown neck architecture name 'NAS-FPM'; registered: .*'NAS-FPN'"):
        resolve_neck_arch("NAS-FPM")
    with pytest.raises(ValueError, match="neck architecture has 7 cells, expected 6"):
        resolve_neck_arch("NAS-FPN", num_cells=6)
    with pytest.raises(ValueError, match="is not valid JSON"):
        resolve_neck_arch("[[1, 3, 4, 'sum']]")
    with pytest.raises(ValueError, match="neck cell 1: compact form needs 4 comma-separated ints"):
        parse_compact_neck_arch("3,1,1,3 | 3,0,1")
    with pytest.raises(ValueError, match="neck cell 0: compact level index 5 not in 0..4"):
        parse_compact_neck_arch("5,1,1,3 | 3,0,1,5 | 4,0,0,6 | 3,0,6,7 | 2,1,7,8 | 0,1,6,9 | 1,1,9,10")
    with pytest.raises(ValueError, match="must be a list of cells, got dict"):
        validate_neck_arch({"cells": PUBLISHED})


def test_register_custom_arch_and_refuse_conflicting_name():
    five_cells = [[0, 1, 3, "sum"], [5, 2, 4, "sum"], [6, 3, 5, 0], [7, 4, 6, 1], [8, 4, 7, "attention"]]
    canonical = register_neck_arch("test-five-cell", five_cells)
    assert canonical[2] == [6, 3, 5, "sum"] and canonical[3] == [7, 4, 6, "attention"]
    assert resolve_neck_arch("test-five-cell") == canonical
    assert register_neck_arch("test-five-cell", canonical) == canonical  # same cells again: no-op
    with pytest.raises(ValueError, match="'NAS-FPN' is already registered with different cells"):
        register_neck_arch("NAS-FPN", five_cells)
    with pytest.raises(ValueError, match="neck cell 0: both inputs are node 0"):
        register_neck_arch("test-broken", [[0, 0, 3, "sum"]] + five_cells[1:])
    assert "test-broken" not in registered_neck_archs()


def _assert_structurally_valid(arch, num_cells):
    """Independent check of the space's constraints (not via validate)."""
    assert len(arch) == num_cells
    for index, (input1, input2, level, op) in enumerate(arch):
        assert 0 <= input1 < 5 + index and 0 <= input2 < 5 + index and input1 != input2
        assert op in ("sum", "attention")
        assert level in (LEVELS if index >= num_cells - 5 else (4, 5, 6, 7))
    assert sorted(cell[2] for cell in arch[-5:]) == list(LEVELS)


@pytest.mark.parametrize("num_cells", [5, 7, 9])
def test_sample_is_valid_seeded_and_covers_every_choice(num_cells):
    space = NeckSearchSpace(num_cells)
    assert isinstance(space, SearchSpace)
    archs = [space.sample(random.Random(seed)) for seed in range(300)]
    for arch in archs:
        _assert_structurally_valid(arch, num_cells)
        assert space.validate(arch) == arch
        assert space.decode(space.encode(arch)) == arch
    assert space.sample(random.Random(7)) == archs[7]
    last = num_cells - 1
    assert {a[last][0] for a in archs} | {a[last][1] for a in archs} == set(range(5 + last))
    assert {a[0][3] for a in archs} == {"sum", "attention"}
    assert len({tuple(c[2] for c in a[-5:]) for a in archs}) > 50  # many output-level orders
    if num_cells > 5:
        assert {a[0][2] for a in archs} == {4, 5, 6, 7}


def test_mutate_keeps_validity_and_respects_probability():
    space = NeckSearchSpace(7)
    rng = random.Random(0)
    assert space.mutate(PUBLISHED, rng, 0.0) == PUBLISHED
    changed = 0
    for _ in range(200):
        child = space.mutate(PUBLISHED, rng, 0.3)
        _assert_structurally_valid(child, 7)
        changed += child != PUBLISHED
    assert changed > 150
    for _ in range(50):
        _assert_structurally_valid(space.mutate(space.sample(rng), rng, 1.0), 7)
    assert PUBLISHED == NASFPN_ARCH  # the parent is not modified in place


def test_crossover_takes_cells_from_parents_and_repairs_output_levels():
    space = NeckSearchSpace(7)
    rng = random.Random(1)
    for _ in range(200):
        a, b = space.sample(rng), space.sample(rng)
        child = space.crossover(a, b, rng)
        _assert_structurally_valid(child, 7)
        for cell, cell_a, cell_b in zip(child, a, b):
            # inputs and op come unchanged from one parent; only output levels may be repaired
            assert (cell[0], cell[1], cell[3]) in {(cell_a[0], cell_a[1], cell_a[3]), (cell_b[0], cell_b[1], cell_b[3])}
        for cell, cell_a, cell_b in zip(child[:2], a, b):
            assert cell in (cell_a, cell_b)
    assert space.crossover(PUBLISHED, PUBLISHED, rng) == PUBLISHED


def test_search_space_rejects_bad_sizes_and_foreign_archs():
    with pytest.raises(ValueError, match="num_cells must be an int >= 5"):
        NeckSearchSpace(4)
    with pytest.raises(ValueError, match="neck architecture has 7 cells, expected 6"):
        NeckSearchSpace(6).validate("NAS-FPN")
    with pytest.raises(ValueError, match="mutation probability must be in \\[0, 1\\], got 1.5"):
        NeckSearchSpace(7).mutate("NAS-FPN", random.Random(0), 1.5)
