"""Registries of the search's pluggable pieces, keyed by their config values: the strategies (``SEARCH.STRATEGY``)
and the fitness functions (``SEARCH.EVALUATOR``). Config validation reads the allowed names from here.

An entry is a builder function named after its config value (detectron2's registries key objects by
``__name__``). Builders of heavy pieces import them when called, so that reading the names stays cheap.
"""

from detectron2.utils.registry import Registry

from ..space.base import SearchSpace
from .strategies import EvolutionStrategy, NSGA2Strategy, RandomSearchStrategy, SearchStrategy

STRATEGY_REGISTRY = Registry("SEARCH_STRATEGY")
STRATEGY_REGISTRY.__doc__ = """
Search strategies: ``fn(cfg, space) -> SearchStrategy`` configured from ``cfg.SEARCH``, selected by
``cfg.SEARCH.STRATEGY``.
"""

FITNESS_REGISTRY = Registry("FITNESS")
FITNESS_REGISTRY.__doc__ = """
Fitness functions: ``fn(cfg, model=None, space=None) -> fitness``, where ``fitness(archs)`` returns one metrics
dict per candidate (see :mod:`detnas_d2.search.runner`); selected by ``cfg.SEARCH.EVALUATOR``.
"""


def _common_args(s) -> dict:
    """Arguments every strategy takes, from ``cfg.SEARCH``."""
    return dict(
        population=s.POPULATION,
        generations=s.GENERATIONS,
        topk=s.TOPK,
        seed=s.SEED,
        max_random_tries=s.MAX_RANDOM_TRIES,
    )


def _evolution_args(s) -> dict:
    """Arguments of the evolutionary strategies, from ``cfg.SEARCH``."""
    return dict(
        num_mutation=s.NUM_MUTATION,
        num_crossover=s.NUM_CROSSOVER,
        mutation_prob=s.MUTATION_PROB,
        max_tries_factor=s.MAX_TRIES_FACTOR,
        **_common_args(s),
    )


@STRATEGY_REGISTRY.register()
def evolution(cfg, space: SearchSpace) -> SearchStrategy:
    """The DetNAS/SPOS evolutionary algorithm."""
    return EvolutionStrategy(space, **_evolution_args(cfg.SEARCH))


@STRATEGY_REGISTRY.register()
def nsga2(cfg, space: SearchSpace) -> SearchStrategy:
    """NSGA-II: the Pareto front of SEARCH.METRIC vs SEARCH.OBJECTIVE_COST."""
    return NSGA2Strategy(space, objective_cost=cfg.SEARCH.OBJECTIVE_COST, **_evolution_args(cfg.SEARCH))


@STRATEGY_REGISTRY.register()
def random(cfg, space: SearchSpace) -> SearchStrategy:
    """Uniform random legal candidates: the same-budget baseline."""
    return RandomSearchStrategy(space, **_common_args(cfg.SEARCH))


@STRATEGY_REGISTRY.register()
def controller(cfg, space: SearchSpace) -> SearchStrategy:
    """The PPO-trained LSTM controller."""
    from .controller import ControllerStrategy  # imports torch; the other strategies do not need it

    c = cfg.SEARCH.CONTROLLER
    return ControllerStrategy(
        space,
        hidden_size=c.HIDDEN_SIZE,
        lr=c.LR,
        clip=c.CLIP,
        entropy_weight=c.ENTROPY_WEIGHT,
        baseline_decay=c.BASELINE_DECAY,
        ppo_epochs=c.PPO_EPOCHS,
        normalize_advantage=c.NORMALIZE_ADVANTAGE,
        **_common_args(cfg.SEARCH),
    )


def build_search_strategy(cfg, space: SearchSpace) -> SearchStrategy:
    """The strategy selected by ``cfg.SEARCH.STRATEGY``, configured from ``cfg.SEARCH``."""
    return STRATEGY_REGISTRY.get(cfg.SEARCH.STRATEGY)(cfg, space)


@FITNESS_REGISTRY.register()
def one_shot(cfg, model=None, space=None):
    """Scores paths of the trained supernet ``model`` (BN recalibrated), each rank its share of every batch."""
    from .one_shot import OneShotFitness  # the detector's data and evaluation stack, loaded when used

    return OneShotFitness(cfg, model)


@FITNESS_REGISTRY.register()
def proxy(cfg, model=None, space=None):
    """Trains a fresh detector per candidate of ``space`` on a short schedule and scores it."""
    from .proxy import ProxyFitness  # the detector's training stack, loaded when used

    return ProxyFitness(cfg, space)


def build_fitness(cfg, model=None, space=None):
    """The fitness selected by ``cfg.SEARCH.EVALUATOR``: of the supernet ``model`` ("one_shot") or of the
    candidates of ``space`` trained on a proxy task ("proxy")."""
    return FITNESS_REGISTRY.get(cfg.SEARCH.EVALUATOR)(cfg, model=model, space=space)
