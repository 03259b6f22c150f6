"""Resource constraints of the search: named cost functions (FLOPs, params, ...) with upper limits.

Costs are cached per architecture key (a candidate is often drawn many times while legal ones are
sought) and the observed range of every cost is tracked, so that an infeasible limit can be
reported with the smallest and largest cost of the space.
"""

import math
from typing import Any, Callable, Dict, Mapping, Tuple

CostFn = Callable[[Any], float]
CostRange = Callable[[str], Tuple[float, float] | None]


class InfeasibleConstraintError(ValueError):
    """No legal candidate can be found under the configured cost limits."""


def format_cost(value: float | None) -> str:
    """Short human-readable cost, e.g. ``3.012e+08``."""
    return "n/a" if value is None else f"{value:.4g}"


class CostConstraints:
    """Cost functions plus upper limits; ``limit <= 0`` means "no limit" for that cost."""

    def __init__(
        self,
        cost_fns: Mapping[str, CostFn] | None = None,
        limits: Mapping[str, float] | None = None,
        cost_range: CostRange | None = None,
    ):
        """
        Args:
            cost_fns: name -> callable(arch) -> float, e.g. {"flops": ..., "params": ...}; all are logged.
            limits: name -> upper limit (inclusive); each limited name needs a cost function.
            cost_range: optional callable(name) -> (smallest, largest) cost over the space, or None
                if unknown; used for an early infeasibility check and in error messages.
        """
        self.cost_fns: Dict[str, CostFn] = dict(cost_fns or {})
        self.limits: Dict[str, float] = {}
        for name, limit in (limits or {}).items():
            if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit) or limit < 0:
                raise ValueError(f"limit for cost '{name}' must be a finite number >= 0 (0 = no limit), got {limit!r}")
            if limit > 0:
                if name not in self.cost_fns:
                    raise ValueError(
                        f"a limit is set for cost '{name}' ({limit:g}) but no cost function named '{name}' was "
                        f"given (cost functions: {sorted(self.cost_fns)})"
                    )
                self.limits[name] = float(limit)
        self.cost_range = cost_range
        self._cache: Dict[str, Dict[str, float]] = {}
        self._observed: Dict[str, Tuple[float, float]] = {}

    def costs(self, key: str, arch: Any) -> Dict[str, float]:
        """All costs of ``arch`` (cached by its key ``key``)."""
        if key not in self._cache:
            values = {name: float(fn(arch)) for name, fn in self.cost_fns.items()}
            for name, value in values.items():
                lo, hi = self._observed.get(name, (value, value))
                self._observed[name] = (min(lo, value), max(hi, value))
            self._cache[key] = values
        return self._cache[key]

    def satisfied(self, costs: Mapping[str, float]) -> bool:
        """Whether every limited cost is within its limit."""
        return all(costs[name] <= limit for name, limit in self.limits.items())

    def describe_limits(self) -> str:
        """E.g. ``flops <= 3e+08, params <= 5e+06`` or ``no cost limit``."""
        if not self.limits:
            return "no cost limit"
        return ", ".join(f"{name} <= {format_cost(limit)}" for name, limit in self.limits.items())

    def describe_ranges(self) -> str:
        """Smallest/largest value of every limited cost: exact if ``cost_range`` knows it, else estimated."""
        parts = []
        for name in self.limits:
            exact = self.cost_range(name) if self.cost_range is not None else None
            if exact is not None:
                parts.append(
                    f"{name} over the search space ranges from {format_cost(exact[0])} (smallest) to "
                    f"{format_cost(exact[1])} (largest)"
                )
            elif name in self._observed:
                lo, hi = self._observed[name]
                parts.append(
                    f"{name} ranges from {format_cost(lo)} (smallest) to {format_cost(hi)} (largest) among "
                    f"{len(self._cache)} distinct sampled candidates (estimated from samples; the cost model "
                    "gives no exact range)"
                )
            else:
                parts.append(f"range of {name} unknown (nothing sampled yet)")
        return "; ".join(parts)

    def check_feasible(self) -> None:
        """Fail before any sampling when ``cost_range`` proves a limit below the smallest possible cost."""
        if self.cost_range is None:
            return
        for name, limit in self.limits.items():
            exact = self.cost_range(name)
            if exact is not None and exact[0] > limit:
                raise InfeasibleConstraintError(
                    f"cost limit {name} <= {format_cost(limit)} cannot be met: {self.describe_ranges()}"
                )
