"""Property tests (hypothesis) of every search space: whatever the seeds and the mutation probability, a sampled,
mutated or crossed-over architecture is valid, already canonical, and a crossover takes each gene from a parent."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detnas_d2.data.autoaugment import AutoAugmentPolicySpace
from detnas_d2.space.backbone import BackboneSearchSpace
from detnas_d2.space.joint import JointSpace
from detnas_d2.space.neck import NeckSearchSpace

SPACES = {
    "backbone-small": BackboneSearchSpace("small"),
    "backbone-large": BackboneSearchSpace("large"),
    "neck-5": NeckSearchSpace(5),
    "neck-7": NeckSearchSpace(7),
    "neck-10": NeckSearchSpace(10),
    "joint": JointSpace({"backbone": BackboneSearchSpace("small"), "neck": NeckSearchSpace(7)}),
    "autoaugment": AutoAugmentPolicySpace(num_sub_policies=3, ops_per_sub_policy=2),
}
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
PROBABILITIES = st.floats(min_value=0.0, max_value=1.0)
PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None)


def _assert_canonical(space, arch):
    """``arch`` passes the space's validation unchanged (valid, and in the form the search logs and hashes)."""
    assert space.validate(arch) == arch
    assert space.decode(space.encode(arch)) == arch


@pytest.mark.parametrize("name", sorted(SPACES))
@PROPERTY
@given(seed=SEEDS, prob=PROBABILITIES)
def test_every_mutated_architecture_is_valid(name, seed, prob):
    space, rng = SPACES[name], random.Random(seed)
    parent = space.sample(rng)
    _assert_canonical(space, parent)
    child = space.mutate(parent, rng, prob)
    _assert_canonical(space, child)
    if prob == 0.0:
        assert child == parent


@pytest.mark.parametrize("name", sorted(SPACES))
@PROPERTY
@given(seed=SEEDS)
def test_every_crossed_over_architecture_is_valid(name, seed):
    space, rng = SPACES[name], random.Random(seed)
    a, b = space.sample(rng), space.sample(rng)
    child = space.crossover(a, b, rng)
    _assert_canonical(space, child)
    assert space.crossover(a, a, rng) == a  # nothing new comes from two equal parents


@PROPERTY
@given(seed=SEEDS)
def test_backbone_crossover_takes_every_gene_from_a_parent(seed):
    space, rng = SPACES["backbone-small"], random.Random(seed)
    a, b = space.sample(rng), space.sample(rng)
    assert all(gene in pair for gene, pair in zip(space.crossover(a, b, rng), zip(a, b)))


@PROPERTY
@given(seed=SEEDS)
def test_neck_crossover_takes_every_intermediate_cell_from_a_parent(seed):
    """Intermediate cells are copied whole; only output levels may be repaired (a level may not repeat)."""
    space, rng = SPACES["neck-7"], random.Random(seed)
    a, b = space.sample(rng), space.sample(rng)
    child = space.crossover(a, b, rng)
    for index, cell in enumerate(child):
        if index < space.first_output_cell:
            assert cell in (a[index], b[index])
        else:
            assert any(cell[:2] + cell[3:] == parent[index][:2] + parent[index][3:] for parent in (a, b))
    assert sorted(cell[2] for cell in child[space.first_output_cell :]) == [3, 4, 5, 6, 7]
