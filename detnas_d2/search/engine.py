"""The search loop: drives a strategy with an evaluator under cost constraints, with a memo,
a crash-safe resumable state, a JSON-lines log, a best-architecture file and a progress plot.

Evaluator interface (implemented later on top of the trained supernet)::

    evaluator(archs: list) -> list[dict]     # one metrics dict per arch, e.g. {"bbox/AP": 31.2, ...}

Nested dicts are flattened with "/" (``{"bbox": {"AP": 1}}`` -> ``"bbox/AP"``); fitness is
``metrics[metric]`` (higher is better); a non-finite value is stored as ``null`` and ranks last.
The evaluator receives at most ``eval_batch_size`` distinct, never-evaluated candidates per call.

Distributed seam: ``run()`` is called on EVERY rank. Only the main rank (``is_main=True``) samples,
keeps the state and writes files. Before each evaluator call it sends
``{"op": "evaluate", "archs": [...]}`` through ``broadcast``; the other ranks, inside ``run()``,
receive it and call their evaluator with the same candidates, so a collective evaluator can shard
the batch (or the dataset) across ranks; only the main rank's return value is used. At the end
(or on an error on the main rank) ``{"op": "stop"}`` releases the other ranks, whose ``run()``
returns ``None``. ``broadcast(obj)`` must return ``obj`` on the main rank and the main rank's
object on the others (e.g. a wrapper around ``torch.distributed.broadcast_object_list``). In a
single process leave ``broadcast=None``.

Files in ``output_dir`` (none when it is ``None``):
  search_state.json   rewritten atomically after every evaluator call; no timing inside, so an
                      interrupted-and-resumed search ends with the same bytes as an uninterrupted one
  search_log.jsonl    one line per evaluated candidate (the only place holding timings); appended before
                      the state is saved, so it holds every candidate of the state: a resume whose state
                      file is missing or unreadable rebuilds it by replaying the strategy on the logged
                      results (nothing is evaluated again)
  best_arch.json      best architecture so far (rewritten after every generation; never written while no
                      candidate has a finite fitness, and a search ending so raises NoFiniteFitnessError)
  search_progress.png fitness vs FLOPs coloured by generation, and best-so-far vs candidate index
  pareto_front.json   multi-objective strategies ("nsga2"): the final front sorted by cost, each member with its
                      rank (position in that order, what SEARCH.EXPORT_RANK selects), arch, fitness and cost
  pareto_front.png    the front after every generation, fitness vs cost (with pareto_front.json)
"""

import copy
import datetime
import json
import logging
import math
import os
import statistics
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from detectron2.config import configurable

from ..space.base import SearchSpace
from .config import validate_search_config
from .constraints import CostConstraints, CostRange, InfeasibleConstraintError, format_cost
from .plots import plot_pareto_fronts, plot_search_progress
from .state import STATE_FORMAT, CorruptStateError, atomic_write, load_state, save_json_atomic
from .strategies import CandidateSearchExhausted, SearchStrategy, build_search_strategy

logger = logging.getLogger("detnas_d2.search")

STATE_FILE = "search_state.json"
LOG_FILE = "search_log.jsonl"
BEST_FILE = "best_arch.json"
PLOT_FILE = "search_progress.png"
FRONT_FILE = "pareto_front.json"
FRONT_PLOT_FILE = "pareto_front.png"

Evaluator = Callable[[List[Any]], Sequence[Mapping[str, Any]]]
Broadcast = Callable[[Any], Any]
GenerationCallback = Callable[[int, dict], None]

#: how to start over where a search is (shown in the errors)
NEW_SEARCH_HELP = "move the folder aside with search_net.py --overwrite, or choose another OUTPUT_DIR"
#: what to do with a folder that already holds a search
EXISTING_SEARCH_HELP = f"continue it with search_net.py --resume (run(resume=True)), {NEW_SEARCH_HELP}"


class SearchExistsError(FileExistsError):
    """A new search was asked for where a search already is (its files would be overwritten)."""


def existing_search_error(output_dir: str, found: Sequence[str], resume: bool) -> SearchExistsError:
    """The error of a new search (or a resume with nothing to resume from) where the files ``found`` are."""
    what = (f"but no {STATE_FILE} or {LOG_FILE} to resume from: {NEW_SEARCH_HELP}" if resume
            else f"which a new search would overwrite: {EXISTING_SEARCH_HELP}")
    return SearchExistsError(f"{output_dir} already holds a search ({', '.join(found)}) {what}")


class NoFiniteFitnessError(RuntimeError):
    """Every evaluated candidate scored a non-finite fitness: there is no winner to export."""


class _LogExhausted(Exception):
    """Internal: a replay of the log reached the first candidate the log does not hold."""


def _stop_at_first_fresh(archs):
    """Evaluator of a replay check: reaching a candidate outside the log ends the check."""
    raise _LogExhausted()


@dataclass
class EvaluatedCandidate:
    """One evaluated architecture with everything the search recorded about it."""

    key: str
    arch: Any
    fitness: Optional[float]
    metrics: Dict[str, Optional[float]]
    costs: Dict[str, float]
    generation: int
    index: int


@dataclass
class SearchResult:
    """What ``SearchEngine.run`` returns: best of the final top-k, the top-k, per-generation stats."""

    best: EvaluatedCandidate
    topk: List[EvaluatedCandidate]
    history: List[dict] = field(default_factory=list)
    n_evaluated: int = 0
    #: Pareto front sorted by cost (multi-objective strategies only)
    front: List[EvaluatedCandidate] = field(default_factory=list)


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> Dict[str, Optional[float]]:
    """Flatten nested metric dicts with "/" and convert values to float (non-finite -> None)."""
    flat: Dict[str, Optional[float]] = {}
    for name, value in metrics.items():
        full = f"{prefix}{name}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, prefix=full + "/"))
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"metric '{full}' must be a number, got {value!r}") from None
        flat[full] = number if math.isfinite(number) else None
    return flat


def _format_eta(seconds: Optional[float]) -> str:
    """``H:MM:SS`` or ``unknown``."""
    return "unknown" if seconds is None else str(datetime.timedelta(seconds=int(round(seconds))))


class SearchEngine:
    """Runs a :class:`SearchStrategy` to completion (or resumes it) and returns a :class:`SearchResult`."""

    @configurable
    def __init__(
        self,
        space: SearchSpace,
        strategy: SearchStrategy,
        evaluator: Evaluator,
        *,
        metric: str,
        constraints: Optional[CostConstraints] = None,
        output_dir: Optional[str] = None,
        eval_batch_size: int = 1,
        is_main: bool = True,
        broadcast: Optional[Broadcast] = None,
        on_generation_end: Optional[GenerationCallback] = None,
        plot_each_generation: bool = True,
        fingerprint_extra: Optional[Mapping[str, Any]] = None,
    ):
        """
        Args:
            space: the search space (encode/decode give the memo keys, which must be str).
            strategy: decides the candidates of every generation.
            evaluator: callable(list of archs) -> list of metric dicts (see module docstring).
            metric: name of the (flattened) metric used as fitness, higher is better.
            constraints: cost functions and limits; ``None`` = no costs, no limits.
            output_dir: where the state/log/best/plot files go; ``None`` keeps everything in memory.
            eval_batch_size: most candidates per evaluator call; the state is saved after each call.
            is_main / broadcast: distributed seam (see module docstring).
            on_generation_end: called as ``fn(generation, stats)`` on the main rank after each
                generation (stats: best/median/worst fitness of the generation, best_so_far,
                best_so_far_flops/costs, n_evaluated, ...); not repeated for generations finished
                before a resume.
            plot_each_generation: redraw search_progress.png after every generation (else only at the end).
            fingerprint_extra: more settings recorded in the state and compared on resume.
        """
        if isinstance(eval_batch_size, bool) or not isinstance(eval_batch_size, int) or eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be an integer >= 1, got {eval_batch_size!r}")
        if not is_main and broadcast is None:
            raise ValueError("is_main=False needs a broadcast callable to receive the candidates from the main rank")
        strategy.check_costs(sorted((constraints or CostConstraints()).cost_fns))
        self.space = space
        self.strategy = strategy
        self.evaluator = evaluator
        self.metric = metric
        self.constraints = constraints if constraints is not None else CostConstraints()
        self.output_dir = output_dir
        self.eval_batch_size = eval_batch_size
        self.is_main = is_main
        self.broadcast = broadcast
        self.on_generation_end = on_generation_end
        self.plot_each_generation = plot_each_generation
        self.fingerprint = self._normalise_json(
            {
                "space": space.name,
                "metric": metric,
                "costs": sorted(self.constraints.cost_fns),
                **{f"limit.{name}": limit for name, limit in self.constraints.limits.items()},
                **strategy.settings(),
                **(fingerprint_extra or {}),
            }
        )
        self._records: Dict[str, dict] = {}
        #: logged results of a state being rebuilt from the log, consumed in log order, and that log's path
        self._replay: "OrderedDict[str, dict]" = OrderedDict()
        self._replay_source = LOG_FILE
        self._pending: Optional[List[str]] = None
        self._num_done = 0
        self._population: List[str] = []
        self._history: List[dict] = []
        self._session_eval_seconds = 0.0
        self._session_evaluated = 0

    @classmethod
    def from_config(
        cls,
        cfg,
        space: SearchSpace,
        evaluator: Evaluator,
        cost_fns: Optional[Mapping[str, Callable[[Any], float]]] = None,
        cost_range: Optional[CostRange] = None,
        output_dir: Optional[str] = None,
    ):
        """Engine arguments from ``cfg.SEARCH``; ``cost_fns`` must hold "flops" / "params" when their limit is set.

        The caller picks the FLOPs callable matching SEARCH.FLOPS_MODE; the mode and the detector
        input size are recorded in the state and in best_arch.json.
        """
        validate_search_config(cfg)
        s = cfg.SEARCH
        return {
            "space": space,
            "strategy": build_search_strategy(cfg, space),
            "evaluator": evaluator,
            "metric": s.METRIC,
            "constraints": CostConstraints(
                cost_fns, {"flops": s.FLOPS_LIMIT, "params": s.PARAMS_LIMIT, "latency": s.LATENCY.LIMIT}, cost_range=cost_range
            ),
            "output_dir": cfg.OUTPUT_DIR if output_dir is None else output_dir,
            "eval_batch_size": s.EVAL_BATCH_SIZE,
            "fingerprint_extra": {
                "SEARCH.SPACE": s.SPACE,
                "SEARCH.DATASET": s.DATASET,
                "SEARCH.FLOPS_MODE": s.FLOPS_MODE,
                "SEARCH.DETECTOR_INPUT_SIZE": list(s.DETECTOR_INPUT_SIZE),
                "SEARCH.BN_RECALIB.NUM_BATCHES": s.BN_RECALIB.NUM_BATCHES,
                "SEARCH.BN_RECALIB.BATCH_SIZE": s.BN_RECALIB.BATCH_SIZE,
                "SEARCH.BN_RECALIB.MODE": s.BN_RECALIB.MODE,
                "SEARCH.BN_RECALIB.MOMENTUM": s.BN_RECALIB.MOMENTUM,
            },
        }

    # ------------------------------------------------------------------ public

    def run(self, resume: bool = False) -> Optional[SearchResult]:
        """Run (``resume=True``: continue from ``output_dir/search_state.json``, or rebuild it from the log) to the end.

        A new search (``resume=False``) refuses to start where a search's files exist (``SearchExistsError``).
        Returns the result on the main rank and ``None`` on the other ranks.
        """
        if not self.is_main:
            self._serve_other_rank()
            return None
        try:
            return self._run_main(resume)
        finally:
            if self.broadcast is not None:
                self.broadcast({"op": "stop"})

    # ------------------------------------------------------------------ main loop

    def check_start(self, resume: bool = False) -> None:
        """Raise now what ``run(resume)`` would raise before its first evaluation, writing nothing.

        Checks the cost limits against the exact cost range, an existing search (new search), the state or the
        log and its match with these settings (resume). It loads the saved state into this engine: run another.
        """
        self.constraints.check_feasible()
        self._start(resume, write=False)

    def _run_main(self, resume: bool) -> SearchResult:
        """Main rank: propose / evaluate / update generation by generation, then write the final files."""
        self.constraints.check_feasible()
        self._start(resume)
        self._run_loop()
        result = self._result()
        self._check_finite(result)
        if self.output_dir is not None:
            self._write_best(result)
            self._write_plot()
            self._write_front(result, plot=True)
        logger.info(
            "Search finished: %d candidates evaluated; best %s = %s, %s, arch %s",
            result.n_evaluated,
            self.metric,
            result.best.fitness,
            self._format_costs(result.best.costs),
            result.best.key,
        )
        return result

    def _run_loop(self) -> None:
        """Every remaining generation; a replayed log must be used up by the end."""
        while not self.strategy.finished:
            if self._pending is None:
                self._propose_generation()
            self._evaluate_pending()
            self._end_generation()
        if self._replay:
            raise self._log_mismatch(next(iter(self._replay)), "the search ends before it")

    def _check_finite(self, result: SearchResult) -> None:
        """Fail, exporting nothing, when no candidate has a finite fitness."""
        if result.best.fitness is not None:
            return
        raise NoFiniteFitnessError(
            f"no candidate has a finite {self.metric} (SEARCH.METRIC): all {result.n_evaluated} evaluated "
            "candidates scored None (NaN, inf or no detections; see search_log.jsonl), so there is no winner and "
            "nothing is exported. Check MODEL.WEIGHTS (a trained supernet), the search dataset and SEARCH.METRIC"
        )

    def _serve_other_rank(self) -> None:
        """Non-main ranks: evaluate whatever the main rank broadcasts until it says stop."""
        while True:
            message = self.broadcast(None)
            if message["op"] == "stop":
                return
            self.evaluator(message["archs"])

    def _key(self, arch: Any) -> str:
        """Memo key of ``arch`` (validates it through the space)."""
        key = self.space.encode(arch)
        if not isinstance(key, str):
            raise ValueError(
                f"{type(self.space).__name__}.encode must return a str (it keys the JSON memo), got {type(key).__name__}"
            )
        return key

    def _is_legal(self, arch: Any) -> bool:
        """Legal = not evaluated in an earlier generation and within every cost limit."""
        key = self._key(arch)
        if key in self._records:
            return False
        return self.constraints.satisfied(self.constraints.costs(key, arch))

    def _propose_generation(self) -> None:
        """Ask the strategy for the next generation and save it as pending (infeasible -> clear error)."""
        generation = self.strategy.generation
        try:
            archs = self.strategy.propose(self._is_legal)
        except CandidateSearchExhausted as e:
            raise InfeasibleConstraintError(
                f"search space '{self.space.name}', generation {generation + 1}/{self.strategy.generations}: {e}. "
                f"A legal candidate must satisfy {self.constraints.describe_limits()} and not have been evaluated "
                "in an earlier generation. "
                f"{self.constraints.describe_ranges()}. Raise the limit (one barely above the smallest cost admits "
                "too few architectures for random sampling) or SEARCH.MAX_RANDOM_TRIES."
            ) from e
        self._pending = [self._key(arch) for arch in archs]
        self._num_done = 0
        self._save_state()

    def _evaluate_pending(self) -> None:
        """Evaluate the current generation in batches of new candidates; repeats are memo hits."""
        while self._num_done < len(self._pending):
            batch, end = [], self._num_done
            while end < len(self._pending) and len(batch) < self.eval_batch_size:
                key = self._pending[end]
                if key not in self._records and key not in batch:
                    batch.append(key)
                end += 1
            if batch:
                self._evaluate_batch(batch)
            self._num_done = end
            self._save_state()

    def _evaluate_batch(self, keys: List[str]) -> None:
        """Record new candidates: results of a replayed log first, the others from one evaluator call."""
        generation = self.strategy.generation
        replayed = self._take_replayed(keys)
        for key, entry in replayed.items():
            self._record(key, self.space.decode(key), entry["metrics"], generation)
        fresh = [key for key in keys if key not in replayed]
        if fresh:
            self._evaluate_fresh(fresh, generation)

    def _take_replayed(self, keys: List[str]) -> Dict[str, dict]:
        """The logged entries of ``keys``, taken in log order; a run diverging from the log fails."""
        if not self._replay:
            return {}
        logged = list(self._replay)
        taken = [key for key in keys if key in self._replay]
        if taken != keys[: len(taken)] or taken != logged[: len(taken)]:
            raise self._log_mismatch(logged[0], f"the search proposes {keys[0]}")
        if len(taken) < len(keys) and len(logged) > len(taken):
            raise self._log_mismatch(logged[len(taken)], f"the search proposes {keys[len(taken)]}")
        return {key: self._replay.pop(key) for key in taken}

    def _log_mismatch(self, logged_key: str, found: str) -> ValueError:
        """The error of a log the strategy does not reproduce (written with other settings, or edited)."""
        index = self._replay[logged_key]["index"] if logged_key in self._replay else "?"
        return ValueError(
            f"{self._replay_source} does not match this search's settings, so "
            f"{STATE_FILE} cannot be rebuilt from it: its candidate {index} is {logged_key} but {found}. "
            f"Resume with the settings the log was written with, or {NEW_SEARCH_HELP}"
        )

    def _evaluate_fresh(self, keys: List[str], generation: int) -> None:
        """Evaluate new candidates in one evaluator call; record them in the memo and the log."""
        archs = [self.space.decode(key) for key in keys]
        if self.broadcast is not None:
            self.broadcast({"op": "evaluate", "archs": archs})
        start = time.perf_counter()
        results = self.evaluator(archs)
        seconds = (time.perf_counter() - start) / len(keys)
        if not isinstance(results, (list, tuple)) or len(results) != len(archs):
            raise ValueError(
                f"evaluator must return a list with one metrics dict per candidate: got "
                f"{type(results).__name__} of length {len(results) if hasattr(results, '__len__') else '?'} "
                f"for {len(archs)} candidates"
            )
        log_lines = []
        for key, arch, raw_metrics in zip(keys, archs, results):
            record = self._record(key, arch, flatten_metrics(raw_metrics), generation)
            self._session_eval_seconds += seconds
            self._session_evaluated += 1
            log_lines.append({**record, "arch": arch, "eval_time_s": round(seconds, 6)})
            logger.info(
                "generation %d/%d, candidate %d/%d: %s = %s, %s (%.1f s, ETA %s)",
                generation + 1,
                self.strategy.generations,
                len(self._records),
                self._budget(),
                self.metric,
                record["fitness"],
                self._format_costs(record["costs"]),
                seconds,
                _format_eta(self._eta_seconds()),
            )
        self._append_log(log_lines)

    def _record(self, key: str, arch: Any, metrics: Dict[str, Optional[float]], generation: int) -> dict:
        """Add one evaluated candidate (flattened metrics) to the memo; return its record."""
        if self.metric not in metrics:
            raise ValueError(
                f"the evaluator's metrics have no '{self.metric}' (the fitness metric, SEARCH.METRIC); "
                f"available: {sorted(metrics)}"
            )
        record = {
            "key": key,
            "generation": generation,
            "index": len(self._records),
            "costs": dict(self.constraints.costs(key, arch)),
            "metrics": metrics,
            "fitness": metrics[self.metric],
        }
        self._records[key] = record
        return record

    def _end_generation(self) -> None:
        """Update the top-k, save, report (log, best_arch.json, plot, callback)."""
        generation = self.strategy.generation
        keys = self._pending
        records = [self._records[key] for key in keys]
        self.strategy.update(keys, [r["fitness"] for r in records], [r["costs"] for r in records])
        stats = self._generation_stats(generation, keys)
        self._history.append(stats)
        self._population = keys
        self._pending = None
        self._num_done = 0
        self._save_state()
        self._log_generation(generation, stats)
        if self.output_dir is not None:
            result = self._result()
            self._write_best(result)
            self._write_front(result, plot=self.plot_each_generation)
            if self.plot_each_generation:
                self._write_plot()
        if self.on_generation_end is not None and not self._replay:  # a logged later candidate: reported before
            self.on_generation_end(generation, stats)

    def _generation_stats(self, generation: int, keys: List[str]) -> dict:
        """Fitness statistics of one generation (distinct candidates) and of the best so far."""
        values = sorted(
            self._records[key]["fitness"] for key in dict.fromkeys(keys) if self._records[key]["fitness"] is not None
        )
        best_key, best_so_far = self.strategy.topk[0]
        best_costs = self._records[best_key]["costs"]
        return {
            "generation": generation,
            "num_candidates": len(keys),
            "num_distinct": len(set(keys)),
            "best": values[-1] if values else None,
            "median": statistics.median(values) if values else None,
            "worst": values[0] if values else None,
            "best_so_far": best_so_far,
            "best_so_far_key": best_key,
            "best_so_far_costs": dict(best_costs),
            "best_so_far_flops": best_costs.get("flops"),
            "n_evaluated": len(self._records),
        }

    def _candidate(self, key: str) -> EvaluatedCandidate:
        """The memo entry of ``key`` as an :class:`EvaluatedCandidate`."""
        record = self._records[key]
        return EvaluatedCandidate(
            key=key,
            arch=self.space.decode(key),
            fitness=record["fitness"],
            metrics=dict(record["metrics"]),
            costs=dict(record["costs"]),
            generation=record["generation"],
            index=record["index"],
        )

    def _result(self) -> SearchResult:
        """Current top-k (best first) with the history so far."""
        topk = [self._candidate(key) for key, _ in self.strategy.topk]
        front = [self._candidate(key) for key in self.strategy.front()]
        return SearchResult(best=topk[0], topk=topk, history=list(self._history), n_evaluated=len(self._records),
                            front=front)

    # ------------------------------------------------------------------ progress reporting

    def _budget(self) -> int:
        """Number of candidate slots of the whole search (evaluations are at most this many)."""
        return self.strategy.population * self.strategy.generations

    def _eta_seconds(self) -> Optional[float]:
        """Remaining time from the mean evaluation time of this session (slots left x mean)."""
        if self._session_evaluated == 0:
            return None
        remaining = max(self._budget() - len(self._records), 0)
        return remaining * self._session_eval_seconds / self._session_evaluated

    @staticmethod
    def _format_costs(costs: Mapping[str, float]) -> str:
        """E.g. ``flops = 2.9e+08, params = 3.1e+06``."""
        return ", ".join(f"{name} = {format_cost(value)}" for name, value in costs.items()) or "no costs"

    def _log_generation(self, generation: int, stats: dict) -> None:
        """Log the generation summary, progress, ETA and the top-k table."""
        cost_names = sorted(self.constraints.cost_fns)
        header = ["rank", self.metric] + cost_names + ["arch"]
        rows = [
            [str(rank), str(fitness)] + [format_cost(self._records[key]["costs"][name]) for name in cost_names] + [key]
            for rank, (key, fitness) in enumerate(self.strategy.topk, start=1)
        ]
        widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
        table = "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in [header] + rows)
        logger.info(
            "Generation %d/%d done (best %s, median %s, worst %s); %d/%d candidates evaluated, ETA %s. " "Top-%d:\n%s",
            generation + 1,
            self.strategy.generations,
            stats["best"],
            stats["median"],
            stats["worst"],
            len(self._records),
            self._budget(),
            _format_eta(self._eta_seconds()),
            len(rows),
            table,
        )
        self._log_front()

    def _log_front(self) -> None:
        """Log the Pareto front (multi-objective strategies only), by cost: rank, fitness, cost, arch."""
        keys = self.strategy.front()
        if not keys:
            return
        cost = self.strategy.objective_cost
        lines = [f"{rank}  {self._records[key]['fitness']}  {format_cost(self._records[key]['costs'][cost])}  {key}"
                 for rank, key in enumerate(keys)]
        logger.info("Pareto front of %s vs %s (rank, %s, %s, arch):\n%s", self.metric, cost, self.metric, cost,
                    "\n".join(lines))

    # ------------------------------------------------------------------ files

    def _path(self, name: str) -> str:
        """Path of an output file."""
        return os.path.join(self.output_dir, name)

    @staticmethod
    def _normalise_json(obj: Any) -> Any:
        """``obj`` as it reads back from JSON (tuples become lists), for exact comparisons after a resume."""
        return json.loads(json.dumps(obj))

    def _state_dict(self) -> dict:
        """The whole search state as plain JSON data (no timings, so equal searches give equal bytes)."""
        return {
            "format": STATE_FORMAT,
            "fingerprint": self.fingerprint,
            "strategy": self.strategy.state_dict(),
            "pending": self._pending,
            "num_done": self._num_done,
            "population": self._population,
            "history": self._history,
            "evaluated": list(self._records.values()),
        }

    def _save_state(self) -> None:
        """Atomically rewrite search_state.json (no-op for an in-memory search)."""
        if self.output_dir is not None:
            save_json_atomic(self._path(STATE_FILE), self._state_dict())

    def _start(self, resume: bool, write: bool = True) -> None:
        """Load the state (resume), or prepare its rebuild from the log, or begin a new search.

        ``write=False`` checks the same things and writes nothing (see :meth:`check_start`).
        """
        if self.output_dir is None:
            return
        if resume and (self._resume_from_state(write) or self._resume_from_log(write)):
            return
        found = [name for name in (STATE_FILE, LOG_FILE, BEST_FILE) if os.path.exists(self._path(name))]
        if found:
            raise existing_search_error(self.output_dir, found, resume)
        if resume:
            logger.info("No search state in %s; starting a new search", self.output_dir)
        if write:
            os.makedirs(self.output_dir, exist_ok=True)
            atomic_write(self._path(LOG_FILE), "")
            self._save_state()

    def _resume_from_state(self, write: bool) -> bool:
        """Load a readable search_state.json (False if there is none, or it is unreadable but the log exists)."""
        state_path = self._path(STATE_FILE)
        if not os.path.exists(state_path):
            return False
        try:
            state = load_state(state_path)
        except CorruptStateError as err:
            if not os.path.exists(self._path(LOG_FILE)):
                raise CorruptStateError(
                    f"{err}; it cannot be rebuilt because {self._path(LOG_FILE)} is missing too. Start a new search: "
                    f"{NEW_SEARCH_HELP}"
                ) from None
            logger.warning("%s; rebuilding the search state from %s", err, self._path(LOG_FILE))
            return False
        self._load(state, state_path)
        self._reconcile_log(write)
        logger.info(
            "Resuming search from %s: generation %d/%d, %d candidates evaluated",
            state_path,
            self.strategy.generation,
            self.strategy.generations,
            len(self._records),
        )
        return True

    def _resume_from_log(self, write: bool) -> bool:
        """Prepare to rebuild the state by replaying search_log.jsonl (False if there is no log)."""
        path = self._path(LOG_FILE)
        if not os.path.exists(path):
            return False
        lines, text = self._read_log()
        self._replay = OrderedDict((entry["key"], entry) for entry, _ in lines)
        self._replay_source = path
        readable = "".join(line + "\n" for _, line in lines)
        if not write:
            self._check_replay()
        elif readable != text:
            logger.info("Dropping the unreadable end of %s", path)
            atomic_write(path, readable)
        logger.info("Rebuilding the search state from the %d candidates of %s (none is evaluated again)",
                    len(lines), path)
        return True

    def _check_replay(self) -> None:
        """Replay the log in memory on a copy of the strategy: fail now if this search does not reproduce it."""
        probe = SearchEngine(
            self.space,
            copy.deepcopy(self.strategy),
            _stop_at_first_fresh,
            metric=self.metric,
            constraints=self.constraints,
            eval_batch_size=self.eval_batch_size,
        )
        probe._replay, probe._replay_source = OrderedDict(self._replay), self._replay_source
        level = logger.level
        logger.setLevel(logging.WARNING)  # the replay's generation reports would read like a running search
        try:
            probe._run_loop()
        except _LogExhausted:
            pass
        finally:
            logger.setLevel(level)

    def _load(self, state: dict, path: str) -> None:
        """Restore a saved state after checking that it was written with the same settings."""
        saved = state["fingerprint"]
        differing = [
            key for key in sorted(set(saved) | set(self.fingerprint)) if saved.get(key) != self.fingerprint.get(key)
        ]
        if differing:
            details = "; ".join(
                f"{key}: state has {saved.get(key, '<missing>')!r}, current run has {self.fingerprint.get(key, '<missing>')!r}"
                for key in differing
            )
            raise ValueError(
                f"cannot resume the search in {path}: its configuration differs ({details}). Resume with the "
                f"original settings, or {NEW_SEARCH_HELP}."
            )
        self.strategy.load_state_dict(state["strategy"])
        self._pending = state["pending"]
        self._num_done = state["num_done"]
        self._population = state["population"]
        self._history = state["history"]
        self._records = {record["key"]: record for record in state["evaluated"]}

    def _read_log(self) -> Tuple[List[Tuple[dict, str]], str]:
        """``([(entry, line), ...], whole text)``: the log's leading lines that parse with indices 0, 1, 2, ..."""
        with open(self._path(LOG_FILE), "r", encoding="utf-8") as f:
            text = f.read()
        lines = []
        for line in text.split("\n"):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                break
            if not isinstance(entry, dict) or entry.get("index") != len(lines) or "key" not in entry:
                break
            lines.append((entry, line))
        return lines, text

    def _reconcile_log(self, write: bool = True) -> None:
        """Make search_log.jsonl hold exactly the candidates of the state (drop lines written after its last save)."""
        path = self._path(LOG_FILE)
        lines, text = self._read_log() if os.path.exists(path) else ([], "")
        if len(lines) < len(self._records):
            raise ValueError(
                f"{path} has {len(lines)} consistent lines but the search state records {len(self._records)} "
                "evaluated candidates; the log was modified or lost. Restore it, or start a new search: "
                f"{NEW_SEARCH_HELP}"
            )
        expected = "".join(line + "\n" for _, line in lines[: len(self._records)])
        if text != expected and write:
            logger.info("Dropping lines of %s written after the last saved state", path)
            atomic_write(path, expected)

    def _append_log(self, entries: List[dict]) -> None:
        """Append and fsync log lines; done BEFORE the state save so a crash can only leave extra lines."""
        if self.output_dir is None:
            return
        with open(self._path(LOG_FILE), "a", encoding="utf-8") as f:
            for entry in entries:
                f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _write_best(self, result: SearchResult) -> None:
        """best_arch.json: the best candidate plus the settings of the search (none while no fitness is finite)."""
        if result.best.fitness is None:
            return
        save_json_atomic(
            self._path(BEST_FILE),
            {**asdict(result.best), "metric": self.metric, "search": self.fingerprint},
            pretty=True,
        )

    def _write_plot(self) -> None:
        """search_progress.png over all evaluated candidates, x axis = FLOPs (or the first cost)."""
        cost_name = (
            "flops" if "flops" in self.constraints.cost_fns else next(iter(sorted(self.constraints.cost_fns)), "flops")
        )
        plot_search_progress(
            list(self._records.values()),
            self._path(PLOT_FILE),
            cost_name=cost_name,
            limit=self.constraints.limits.get(cost_name),
            metric=self.metric,
        )

    def _write_front(self, result: SearchResult, plot: bool) -> None:
        """pareto_front.json (and pareto_front.png when ``plot``) of a multi-objective strategy; no-op otherwise."""
        if not result.front:
            return
        cost = self.strategy.objective_cost
        members = [
            {"rank": rank, "key": c.key, "arch": c.arch, "fitness": c.fitness, "cost": c.costs[cost],
             "costs": c.costs, "generation": c.generation, "index": c.index}
            for rank, c in enumerate(result.front)
        ]
        save_json_atomic(
            self._path(FRONT_FILE),
            {"metric": self.metric, "cost": cost, "generations_done": self.strategy.generation, "front": members},
            pretty=True,
        )
        if plot:
            fronts = [[self._records[key] for key in keys] for keys in self.strategy.fronts]
            plot_pareto_fronts(fronts, list(self._records.values()), self._path(FRONT_PLOT_FILE), cost, self.metric)
