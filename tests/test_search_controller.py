"""Tests of the PPO-trained LSTM controller strategy: masks keep samples valid, it learns a synthetic optimum that
random search misses, its state round-trips exactly and a killed search resumes to the uninterrupted result."""

import json
import os
import random
import re

import pytest
import torch

from detnas_d2.data.autoaugment.space import AutoAugmentPolicySpace
from detnas_d2.search.build import build_search_strategy
from detnas_d2.search.config import validate_search_config
from detnas_d2.search.constraints import CostConstraints
from detnas_d2.search.controller import ControllerStrategy, tensor_from_json, tensor_to_json
from detnas_d2.search.runner import SearchRunner
from detnas_d2.search.store import BEST_FILE, STATE_FILE
from detnas_d2.search.strategies import RandomSearchStrategy
from detnas_d2.search.tokens import CategoricalTokenizer, register_tokenizer, tokenizer_for
from detnas_d2.space.backbone import BackboneSearchSpace
from detnas_d2.space.joint import JointSpace
from detnas_d2.space.neck import NeckSearchSpace
from tests.test_search_strategies import (
    CountingEvaluator,
    SimulatedKill,
    ToySpace,
    _search_cfg,
    run_in_memory,
    toy_cost_range,
    toy_flops,
)

register_tokenizer(ToySpace, lambda space: CategoricalTokenizer([space.num_choices] * space.num_genes))


def make_controller(space, seed=0, population=20, generations=20, **overrides):
    """A controller with the SEARCH.CONTROLLER defaults (hidden 64, LR 0.02, 10 PPO epochs, decay 0.5)."""
    return ControllerStrategy(
        space, population=population, generations=generations, topk=5, seed=seed, max_random_tries=1000, **overrides
    )


@pytest.mark.parametrize(
    "space",
    [
        NeckSearchSpace(7),
        NeckSearchSpace(5),
        AutoAugmentPolicySpace(),
        JointSpace({"backbone": BackboneSearchSpace(), "neck": NeckSearchSpace(6)}),
    ],
    ids=["neck7", "neck5", "autoaug", "joint"],
)
def test_every_sample_is_valid_and_masks_admit_every_valid_architecture(space):
    strategy = make_controller(space, population=50)
    archs = strategy.propose(lambda arch: True)
    assert len({space.encode(a) for a in archs}) == 50  # distinct, and encode validates each one
    tokenizer, rng = tokenizer_for(space), random.Random(0)
    for _ in range(50):  # the masks exclude no valid architecture: every token of a uniform sample is allowed
        arch = space.sample(rng)
        tokens = tokenizer.from_arch(arch)
        assert all(tokenizer.allowed(tokens[:t])[token] for t, token in enumerate(tokens))
        assert space.encode(tokenizer.to_arch(tokens)) == space.encode(arch)


@pytest.mark.parametrize("space", [NeckSearchSpace(7), AutoAugmentPolicySpace()], ids=["neck", "autoaug"])
def test_updates_on_masked_spaces_keep_the_policy_finite_and_learning(space):
    strategy = make_controller(space, population=8, generations=3)
    for _ in range(3):
        archs = strategy.propose(lambda arch: True)
        strategy.update([space.encode(a) for a in archs], [float(i) for i in range(8)])
    assert all(torch.isfinite(p).all() for p in strategy.policy.parameters())
    assert strategy.policy.heads.bias.abs().max() > 0  # the update moved the policy


def test_neck_output_cells_cover_each_level_once_even_from_a_skewed_policy():
    space = NeckSearchSpace(7)
    strategy = make_controller(space)
    with torch.no_grad():
        strategy.policy.heads.bias.fill_(0.0)
        for position in range(2, len(strategy.tokenizer.sizes), 4):  # level tokens: push hard towards P3
            strategy.policy.heads.bias[strategy.policy.offsets[position]] = 50.0
    for arch in strategy.propose(lambda arch: True):
        assert sorted(cell[2] for cell in arch[-5:]) == [3, 4, 5, 6, 7]
        assert all(cell[2] != 3 for cell in arch[:-5]) and all(cell[0] != cell[1] for cell in arch)


@pytest.mark.e2e
def test_controller_reaches_the_optimum_neighbourhood_where_random_search_does_not():
    space = ToySpace()  # 20 positions x 4 choices, fitness = matches with a hidden target
    for seed in range(2):
        ppo, _ = run_in_memory(make_controller(space, seed=seed), flops_limit=0)
        rnd, _ = run_in_memory(
            RandomSearchStrategy(space, population=20, generations=20, topk=5, seed=seed, max_random_tries=1000),
            flops_limit=0,
        )
        assert ppo.n_evaluated == rnd.n_evaluated == 400
        assert ppo.best.fitness >= 17 and rnd.best.fitness <= 13, (seed, ppo.best.fitness, rnd.best.fitness)


def test_state_dict_round_trips_exactly_and_continues_identically():
    space = ToySpace()
    a = make_controller(space, generations=6)
    for _ in range(2):
        archs = a.propose(lambda arch: True)
        a.update([space.encode(x) for x in archs], [float(sum(x)) for x in archs])
    a.propose(lambda arch: True)  # a pending batch is part of the state
    state = json.loads(json.dumps(a.state_dict()))
    b = make_controller(space, generations=6, seed=0)
    b.load_state_dict(state)
    assert json.dumps(b.state_dict(), sort_keys=True) == json.dumps(a.state_dict(), sort_keys=True)
    for strategy in (a, b):
        strategy.update([space.encode(space.validate(t)) for t in strategy.batch_tokens], [1.0] * 20)
    assert a.propose(lambda arch: True) == b.propose(lambda arch: True)
    assert all(torch.equal(x, y) for x, y in zip(a.policy.parameters(), b.policy.parameters()))
    t = torch.randn(3, 4).double()
    assert torch.equal(tensor_from_json(json.loads(json.dumps(tensor_to_json(t)))), t)


def _engine(output_dir, evaluator, **controller):
    """Controller search on the toy space under the toy FLOPs limit: 10 x 4 candidate slots."""
    strategy = make_controller(ToySpace(), population=10, generations=4, **controller)
    return SearchRunner(
        strategy.space,
        strategy,
        evaluator,
        metric="bbox/AP",
        output_dir=output_dir,
        constraints=CostConstraints({"flops": toy_flops}, {"flops": 40e6}, cost_range=toy_cost_range),
        plot_each_generation=False,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted controller search: (folder, result)."""
    folder = tmp_path_factory.mktemp("reference")
    return folder, _engine(str(folder), CountingEvaluator(ToySpace())).run()


@pytest.mark.e2e
@pytest.mark.parametrize("kill_after", [7, 23, 39])
def test_killed_controller_search_resumes_to_the_uninterrupted_state(tmp_path, reference, kill_after):
    reference, ref_result = reference
    killed = tmp_path / "killed"
    first = CountingEvaluator(ToySpace(), kill_after=kill_after)
    with pytest.raises(SimulatedKill):
        _engine(str(killed), first).run()
    second = CountingEvaluator(ToySpace())
    assert _engine(str(killed), second).run(resume=True) == ref_result
    for name in (STATE_FILE, BEST_FILE):
        assert (killed / name).read_bytes() == (reference / name).read_bytes()
    assert not set(first.counts) & set(second.counts)
    with pytest.raises(ValueError, match=re.escape("SEARCH.CONTROLLER.LR: state has 0.02, current run has 0.5")):
        _engine(str(killed), CountingEvaluator(ToySpace()), lr=0.5).run(resume=True)
    os.remove(killed / STATE_FILE)  # the state rebuilt from the log (strategy replayed) is the same too
    assert _engine(str(killed), CountingEvaluator(ToySpace())).run(resume=True) == ref_result
    assert (killed / STATE_FILE).read_bytes() == (reference / STATE_FILE).read_bytes()


def test_config_builds_the_controller_and_names_bad_keys():
    cfg = _search_cfg(STRATEGY="controller", **{"CONTROLLER.HIDDEN_SIZE": 16})
    validate_search_config(cfg)
    strategy = build_search_strategy(cfg, BackboneSearchSpace())
    assert isinstance(strategy, ControllerStrategy) and strategy.hidden_size == 16
    assert strategy.settings()["SEARCH.CONTROLLER.PPO_EPOCHS"] == 10
    for key, value, message in [
        ("CONTROLLER.CLIP", 0.0, "SEARCH.CONTROLLER.CLIP = 0.0 is invalid: must be a number > 0"),
        ("CONTROLLER.BASELINE_DECAY", 1.0, "CONTROLLER.BASELINE_DECAY = 1.0 is invalid: must be a number in [0, 1)"),
        ("CONTROLLER.PPO_EPOCHS", 0, "SEARCH.CONTROLLER.PPO_EPOCHS = 0 is invalid"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            validate_search_config(_search_cfg(STRATEGY="controller", **{key: value}))


def test_a_space_without_tokenizer_is_named():
    class Opaque(ToySpace.__base__):
        name = "opaque"

    with pytest.raises(ValueError, match="cannot search space 'opaque'.*no tokenizer is registered"):
        make_controller(Opaque())
