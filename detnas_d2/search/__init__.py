"""Architecture search: strategies (evolution, nsga2, random; the PPO controller in ``controller.py``), the runner
with memo, resumable store and reporting hooks, and the fitness functions (``one_shot.py``, ``proxy.py``)."""

from .build import FITNESS_REGISTRY, STRATEGY_REGISTRY, build_search_strategy  # noqa: F401
from .constraints import CostConstraints, InfeasibleConstraintError  # noqa: F401
from .runner import EvaluatedCandidate, SearchResult, SearchRunner  # noqa: F401
from .strategies import EvolutionStrategy, RandomSearchStrategy  # noqa: F401
