"""Reporting of a search, as hooks the runner calls (in the style of detectron2's ``HookBase``).

A hook sees the runner as ``self.runner`` and is called after each freshly evaluated candidate, after each
generation (also for generations rebuilt from the log on a resume: ``self.runner.replaying``) and after the
search. Files written by the default hooks (in ``output_dir``):

  best_arch.json      best architecture so far (rewritten after every generation; never written while no
                      candidate has a finite fitness)
  search_progress.png fitness vs FLOPs coloured by generation, and best-so-far vs candidate index
  pareto_front.json   multi-objective strategies ("nsga2"): the final front sorted by cost, each member with its
                      rank (position in that order, what SEARCH.EXPORT_RANK selects), arch, fitness and cost
  pareto_front.png    the front after every generation, fitness vs cost (with pareto_front.json)
"""

import datetime
import json
import logging
import os
from dataclasses import asdict
from typing import Dict, List, Mapping

from detectron2.utils.events import EventStorage, TensorboardXWriter

from ..utils.io import atomic_write
from .constraints import format_cost
from .plots import plot_pareto_fronts, plot_search_progress
from .state import save_json_atomic
from .store import BEST_FILE

logger = logging.getLogger("detnas_d2.search")

PLOT_FILE = "search_progress.png"
METRICS_FILE = "search_metrics.json"
FRONT_FILE = "pareto_front.json"
FRONT_PLOT_FILE = "pareto_front.png"

#: per-generation statistics written as TensorBoard scalars
SCALARS = ("best", "median", "worst", "best_so_far", "best_so_far_flops", "n_evaluated")


class SearchHook:
    """Base class of the search's reporting hooks; every method is a no-op by default."""

    #: the :class:`~detnas_d2.search.runner.SearchRunner` (a weak proxy), set when the hook is registered
    runner = None

    def after_candidate(self, record: Dict, seconds: float) -> None:
        """Called after a freshly evaluated candidate was recorded (``seconds``: its share of the fitness call)."""

    def after_generation(self, stats: Dict) -> None:
        """Called after a generation was merged into the strategy and the state saved."""

    def after_search(self, result) -> None:
        """Called once with the final :class:`~detnas_d2.search.runner.SearchResult` of a successful search."""


def format_eta(seconds: float | None) -> str:
    """``H:MM:SS`` or ``unknown``."""
    return "unknown" if seconds is None else str(datetime.timedelta(seconds=int(round(seconds))))


def format_costs(costs: Mapping[str, float]) -> str:
    """E.g. ``flops = 2.9e+08, params = 3.1e+06``."""
    return ", ".join(f"{name} = {format_cost(value)}" for name, value in costs.items()) or "no costs"


class ProgressLogger(SearchHook):
    """Console progress: a line per candidate with the ETA, a top-k table (and Pareto front) per generation,
    and the final summary. The ETA is the mean evaluation time of this session times the slots left."""

    def __init__(self):
        self._seconds = 0.0
        self._evaluated = 0

    def _eta_seconds(self) -> float | None:
        """Remaining time from the mean evaluation time of this session (slots left x mean)."""
        if self._evaluated == 0:
            return None
        remaining = max(self.runner.budget - len(self.runner.records), 0)
        return remaining * self._seconds / self._evaluated

    def after_candidate(self, record: Dict, seconds: float) -> None:
        runner = self.runner
        self._seconds += seconds
        self._evaluated += 1
        logger.info(
            "generation %d/%d, candidate %d/%d: %s = %s, %s (%.1f s, ETA %s)",
            record["generation"] + 1,
            runner.strategy.generations,
            len(runner.records),
            runner.budget,
            runner.metric,
            record["fitness"],
            format_costs(record["costs"]),
            seconds,
            format_eta(self._eta_seconds()),
        )

    def after_generation(self, stats: Dict) -> None:
        runner = self.runner
        cost_names = sorted(runner.constraints.cost_fns)
        header = ["rank", runner.metric] + cost_names + ["arch"]
        rows = [
            [str(rank), str(fitness)] + [format_cost(runner.records[key]["costs"][name]) for name in cost_names] + [key]
            for rank, (key, fitness) in enumerate(runner.strategy.topk, start=1)
        ]
        widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
        table = "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in [header] + rows)
        logger.info(
            "Generation %d/%d done (best %s, median %s, worst %s); %d/%d candidates evaluated, ETA %s. Top-%d:\n%s",
            stats["generation"] + 1,
            runner.strategy.generations,
            stats["best"],
            stats["median"],
            stats["worst"],
            len(runner.records),
            runner.budget,
            format_eta(self._eta_seconds()),
            len(rows),
            table,
        )
        self._log_front()

    def _log_front(self) -> None:
        """Log the Pareto front (multi-objective strategies only), by cost: rank, fitness, cost, arch."""
        runner = self.runner
        keys = runner.strategy.front()
        if not keys:
            return
        cost = runner.strategy.objective_cost
        lines = [
            f"{rank}  {runner.records[key]['fitness']}  {format_cost(runner.records[key]['costs'][cost])}  {key}"
            for rank, key in enumerate(keys)
        ]
        logger.info(
            "Pareto front of %s vs %s (rank, %s, %s, arch):\n%s",
            runner.metric,
            cost,
            runner.metric,
            cost,
            "\n".join(lines),
        )

    def after_search(self, result) -> None:
        logger.info(
            "Search finished: %d candidates evaluated; best %s = %s, %s, arch %s",
            result.n_evaluated,
            self.runner.metric,
            result.best.fitness,
            format_costs(result.best.costs),
            result.best.key,
        )


class BestArchWriter(SearchHook):
    """best_arch.json: the best candidate plus the settings of the search, after every generation and at the end."""

    def __init__(self, output_dir: str):
        self.path = os.path.join(output_dir, BEST_FILE)

    def _write(self, result) -> None:
        """Write ``result.best`` (nothing while no fitness is finite)."""
        if result.best.fitness is None:
            return
        save_json_atomic(
            self.path,
            {**asdict(result.best), "metric": self.runner.metric, "search": self.runner.fingerprint},
            pretty=True,
        )

    def after_generation(self, stats: Dict) -> None:
        self._write(self.runner.result())

    def after_search(self, result) -> None:
        self._write(result)


class ProgressPlotWriter(SearchHook):
    """search_progress.png over all evaluated candidates, x axis = FLOPs (or the first cost); at the end of the
    search, and after every generation when ``each_generation``."""

    def __init__(self, output_dir: str, each_generation: bool = True):
        self.path = os.path.join(output_dir, PLOT_FILE)
        self.each_generation = each_generation

    def _write(self) -> None:
        """Draw the plot of every candidate evaluated so far."""
        cost_fns, limits = self.runner.constraints.cost_fns, self.runner.constraints.limits
        cost_name = "flops" if "flops" in cost_fns else next(iter(sorted(cost_fns)), "flops")
        plot_search_progress(
            list(self.runner.records.values()),
            self.path,
            cost_name=cost_name,
            limit=limits.get(cost_name),
            metric=self.runner.metric,
        )

    def after_generation(self, stats: Dict) -> None:
        if self.each_generation:
            self._write()

    def after_search(self, result) -> None:
        self._write()


class ParetoFrontWriter(SearchHook):
    """pareto_front.json after every generation, with pareto_front.png (at the end, and after every generation when
    ``each_generation``), of a multi-objective strategy; nothing for the others."""

    def __init__(self, output_dir: str, each_generation: bool = True):
        self.output_dir = output_dir
        self.each_generation = each_generation

    def _write(self, result, plot: bool) -> None:
        """Write the front of ``result`` (and its plot when ``plot``)."""
        if not result.front:
            return
        runner = self.runner
        cost = runner.strategy.objective_cost
        members = [
            {
                "rank": rank,
                "key": c.key,
                "arch": c.arch,
                "fitness": c.fitness,
                "cost": c.costs[cost],
                "costs": c.costs,
                "generation": c.generation,
                "index": c.index,
            }
            for rank, c in enumerate(result.front)
        ]
        save_json_atomic(
            os.path.join(self.output_dir, FRONT_FILE),
            {"metric": runner.metric, "cost": cost, "generations_done": runner.strategy.generation, "front": members},
            pretty=True,
        )
        if plot:
            fronts = [[runner.records[key] for key in keys] for keys in runner.strategy.fronts]
            plot_pareto_fronts(
                fronts,
                list(runner.records.values()),
                os.path.join(self.output_dir, FRONT_PLOT_FILE),
                cost,
                runner.metric,
            )

    def after_generation(self, stats: Dict) -> None:
        self._write(self.runner.result(), plot=self.each_generation)

    def after_search(self, result) -> None:
        self._write(result, plot=True)


def default_hooks(output_dir: str | None, plot_each_generation: bool = True) -> List[SearchHook]:
    """The console progress, and the best-architecture, progress-plot and Pareto-front files in ``output_dir``
    (none when it is ``None``)."""
    hooks: List[SearchHook] = [ProgressLogger()]
    if output_dir is not None:
        hooks += [
            BestArchWriter(output_dir),
            ParetoFrontWriter(output_dir, plot_each_generation),
            ProgressPlotWriter(output_dir, plot_each_generation),
        ]
    return hooks


class SearchEventWriter(SearchHook):
    """Per-generation statistics as detectron2 events under ``search/``: JSON lines (``search_metrics.json``,
    detectron2's JSONWriter format) and TensorBoard scalars, so ``tensorboard --logdir OUTPUT_DIR`` shows the search
    beside any training run written there. ``search_metrics.json`` is rewritten atomically from the whole history
    after every generation, so a failed write (a full disk) or a kill loses no row: the next write restores it.
    Generations rebuilt from the log on a resume were sent to TensorBoard before and are not sent again."""

    def __init__(self, output_dir: str):
        os.makedirs(output_dir, exist_ok=True)
        self.metrics_file = os.path.join(output_dir, METRICS_FILE)
        self.tensorboard = TensorboardXWriter(output_dir)

    def after_generation(self, stats: Dict) -> None:
        atomic_write(self.metrics_file, "".join(json.dumps(row, sort_keys=True) + "\n" for row in self._rows()))
        if self.runner.replaying:
            return
        with EventStorage(start_iter=stats["generation"]) as storage:
            for name, value in self._scalars(stats).items():
                storage.put_scalar(name, value, smoothing_hint=False)
            self.tensorboard.write()

    def _rows(self) -> List[Dict]:
        """One ``{"iteration": generation, "search/<name>": value}`` row per finished generation."""
        return [{"iteration": stats["generation"], **self._scalars(stats)} for stats in self.runner.history]

    @staticmethod
    def _scalars(stats: Dict) -> Dict[str, float]:
        """The :data:`SCALARS` of one generation's statistics that have a value, named ``search/<name>``."""
        return {f"search/{name}": float(stats[name]) for name in SCALARS if stats.get(name) is not None}

    def close(self) -> None:
        """Close the TensorBoard event file (also when the search failed)."""
        self.tensorboard.close()
