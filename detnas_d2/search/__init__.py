"""Architecture search: strategies (evolution, random; the PPO controller in ``controller.py``), the engine with memo
and resumable state, evaluators."""
from .constraints import CostConstraints, InfeasibleConstraintError  # noqa: F401
from .engine import EvaluatedCandidate, SearchEngine, SearchResult  # noqa: F401
from .strategies import EvolutionStrategy, RandomSearchStrategy, build_search_strategy  # noqa: F401
