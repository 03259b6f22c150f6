"""``search_progress.png``: fitness vs cost of every evaluated candidate, and the best-so-far curve;
``pareto_front.png``: the Pareto front of every generation of a multi-objective search.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend switch), so it is
safe on headless machines and inside processes that use another backend.
"""

import io
from typing import Mapping, Sequence

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..utils.io import atomic_write


def plot_search_progress(
    records: Sequence[Mapping],
    path: str,
    cost_name: str = "flops",
    limit: float | None = None,
    metric: str = "fitness",
) -> None:
    """Write the two-panel progress figure to ``path`` (atomically).

    Args:
        records: evaluated candidates in evaluation order, each with "index", "generation",
            "fitness" (None = non-finite, not drawn) and "costs" (name -> value).
        cost_name: cost on the x axis of the left panel; candidate index if a record lacks it.
        limit: the cost limit, drawn as a vertical line when > 0.
        metric: axis label of the fitness.
    """
    scored = [r for r in records if r["fitness"] is not None]
    use_cost = all(cost_name in r["costs"] for r in scored)
    fig = Figure(figsize=(12, 4.8))
    FigureCanvasAgg(fig)
    ax_cost, ax_best = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.11, top=0.93, wspace=0.22)

    xs = [r["costs"][cost_name] if use_cost else r["index"] for r in scored]
    scatter = ax_cost.scatter(
        xs, [r["fitness"] for r in scored], c=[r["generation"] for r in scored], cmap="viridis", s=14
    )
    if scored:
        fig.colorbar(scatter, ax=ax_cost, label="generation")
    if use_cost and limit:
        ax_cost.axvline(limit, color="red", linestyle="--", linewidth=1, label=f"{cost_name} limit")
        ax_cost.legend(loc="lower right")
    ax_cost.set_xlabel(cost_name if use_cost else "candidate index")
    ax_cost.set_ylabel(metric)
    ax_cost.set_title(f"{len(records)} evaluated candidates")

    best_index, best_value, best = [], [], None
    for r in records:
        if r["fitness"] is not None and (best is None or r["fitness"] > best):
            best = r["fitness"]
        if best is not None:
            best_index.append(r["index"])
            best_value.append(best)
    ax_best.step(best_index, best_value, where="post", color="tab:blue")
    ax_best.set_xlabel("candidate index")
    ax_best.set_ylabel(f"best {metric} so far")
    ax_best.set_title("best so far")

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write(path, buffer.getvalue())


def plot_pareto_fronts(
    fronts: Sequence[Sequence[Mapping]], records: Sequence[Mapping], path: str, cost_name: str, metric: str
) -> None:
    """Write ``pareto_front.png`` to ``path`` (atomically): each generation's front as a step line, fitness vs cost.

    ``fronts``: per generation, its front's records sorted by cost; ``records``: every evaluated candidate (grey).
    """
    fig = Figure(figsize=(7.5, 5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    scored = [r for r in records if r["fitness"] is not None]
    ax.scatter(
        [r["costs"][cost_name] for r in scored], [r["fitness"] for r in scored], s=10, color="0.75", label="evaluated"
    )
    colours = colormaps["viridis"]
    for generation, front in enumerate(fronts):
        members = [r for r in front if r["fitness"] is not None]
        last = generation == len(fronts) - 1
        ax.step(
            [r["costs"][cost_name] for r in members],
            [r["fitness"] for r in members],
            where="post",
            marker="o",
            markersize=6 if last else 3,
            linewidth=2 if last else 1,
            color="tab:red" if last else colours(generation / max(len(fronts) - 1, 1)),
            label=f"front after generation {generation + 1}" if last or generation == 0 else "_",
        )
    ax.set_xlabel(f"{cost_name} (lower is better)")
    ax.set_ylabel(f"{metric} (higher is better)")
    ax.set_title(f"Pareto front per generation ({len(records)} evaluated)")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write(path, buffer.getvalue())
