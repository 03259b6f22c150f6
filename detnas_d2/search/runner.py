"""The search loop: drives a strategy with a fitness under cost constraints, generation by generation
(propose / evaluate / update), with a memo so that no candidate is evaluated twice.

Fitness interface (e.g. :class:`~detnas_d2.search.one_shot.OneShotFitness`)::

    fitness(archs: list) -> list[dict]     # one metrics dict per arch, e.g. {"bbox/AP": 31.2, ...}

Nested dicts are flattened with "/" (``{"bbox": {"AP": 1}}`` -> ``"bbox/AP"``); the candidate's fitness value is
``metrics[metric]`` (higher is better); a non-finite value is stored as ``null`` and ranks last. The fitness
receives at most ``eval_batch_size`` distinct, never-evaluated candidates per call.

With an ``output_dir`` the search is crash-safe and resumable (:mod:`~detnas_d2.search.store`) and reports
through hooks (:mod:`~detnas_d2.search.hooks`): console progress, best_arch.json, the progress plot and the Pareto
front. A search ending with no finite fitness raises :class:`NoFiniteFitnessError`. Several processes run one
search through :func:`~detnas_d2.search.distributed.run_on_every_rank`.
"""

import copy
import hashlib
import json
import logging
import math
import statistics
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Sequence

from detectron2.config import configurable

from ..space.base import SearchSpace
from .build import build_search_strategy
from .config import validate_search_config
from .constraints import CostConstraints, CostRange, InfeasibleConstraintError
from .hooks import SearchHook, default_hooks
from .state import STATE_FORMAT
from .store import LOG_FILE, NEW_SEARCH_HELP, STATE_FILE, SearchStore, check_same_settings
from .strategies import CandidateSearchExhausted, SearchStrategy

logger = logging.getLogger("detnas_d2.search")

Fitness = Callable[[List[Any]], Sequence[Mapping[str, Any]]]


class NoFiniteFitnessError(RuntimeError):
    """Every evaluated candidate scored a non-finite fitness: there is no winner to export."""


class _LogExhausted(Exception):
    """Internal: a replay of the log reached the first candidate the log does not hold."""


def _stop_at_first_fresh(archs):
    """Fitness of a replay check: reaching a candidate outside the log ends the check."""
    raise _LogExhausted()


@dataclass
class EvaluatedCandidate:
    """One evaluated architecture with everything the search recorded about it."""

    key: str
    arch: Any
    fitness: float | None
    metrics: Dict[str, float | None]
    costs: Dict[str, float]
    generation: int
    index: int


@dataclass
class SearchResult:
    """What ``SearchRunner.run`` returns: best of the final top-k, the top-k, per-generation stats."""

    best: EvaluatedCandidate
    topk: List[EvaluatedCandidate]
    history: List[dict] = field(default_factory=list)
    n_evaluated: int = 0
    #: Pareto front sorted by cost (multi-objective strategies only)
    front: List[EvaluatedCandidate] = field(default_factory=list)


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> Dict[str, float | None]:
    """Flatten nested metric dicts with "/" and convert values to float (non-finite -> None)."""
    flat: Dict[str, float | None] = {}
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


class SearchRunner:
    """Runs a :class:`SearchStrategy` to completion (or resumes it) and returns a :class:`SearchResult`."""

    @configurable
    def __init__(
        self,
        space: SearchSpace,
        strategy: SearchStrategy,
        fitness: Fitness,
        *,
        metric: str,
        constraints: CostConstraints | None = None,
        output_dir: str | None = None,
        eval_batch_size: int = 1,
        plot_each_generation: bool = True,
        hooks: Sequence[SearchHook] = (),
        fingerprint_extra: Mapping[str, Any] | None = None,
    ):
        """
        Args:
            space: the search space (encode/decode give the memo keys, which must be str).
            strategy: decides the candidates of every generation.
            fitness: callable(list of archs) -> list of metric dicts (see module docstring).
            metric: name of the (flattened) metric used as fitness value, higher is better.
            constraints: cost functions and limits; ``None`` = no costs, no limits.
            output_dir: where the state/log/best/plot files go; ``None`` keeps everything in memory.
            eval_batch_size: most candidates per fitness call; the state is saved after each call.
            plot_each_generation: redraw search_progress.png after every generation (else only at the end).
            hooks: more :class:`~detnas_d2.search.hooks.SearchHook` s, called after the default ones.
            fingerprint_extra: more settings recorded in the state and compared on resume.
        """
        if isinstance(eval_batch_size, bool) or not isinstance(eval_batch_size, int) or eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be an integer >= 1, got {eval_batch_size!r}")
        strategy.check_costs(sorted((constraints or CostConstraints()).cost_fns))
        self.space = space
        self.strategy = strategy
        self.fitness = fitness
        self.metric = metric
        self.constraints = constraints if constraints is not None else CostConstraints()
        self.output_dir = output_dir
        self.store = SearchStore(output_dir) if output_dir is not None else None
        self.eval_batch_size = eval_batch_size
        self.fingerprint = json.loads(
            json.dumps(  # as it reads back from JSON, for exact comparisons on resume
                {
                    "space": space.name,
                    "metric": metric,
                    "costs": sorted(self.constraints.cost_fns),
                    **{f"limit.{name}": limit for name, limit in self.constraints.limits.items()},
                    **strategy.settings(),
                    **(fingerprint_extra or {}),
                }
            )
        )
        #: the fingerprint's digest, in every log line: a state rebuilt from the log must have been scored alike
        self.settings_digest = hashlib.sha256(json.dumps(self.fingerprint, sort_keys=True).encode()).hexdigest()[:16]
        #: the memo: key -> record (generation, index, costs, metrics, fitness) of every evaluated candidate
        self.records: Dict[str, dict] = {}
        #: logged results of a state being rebuilt from the log, consumed in log order, and that log's path
        self._replay: OrderedDict[str, dict] = OrderedDict()
        self._replay_source = LOG_FILE
        self._pending: List[str] | None = None
        self._num_done = 0
        self._population: List[str] = []
        self._history: List[dict] = []
        self._hooks: List[SearchHook] = []
        self.register_hooks(default_hooks(output_dir, plot_each_generation) + list(hooks))

    @classmethod
    def from_config(
        cls,
        cfg,
        space: SearchSpace,
        fitness: Fitness,
        cost_fns: Mapping[str, Callable[[Any], float]] | None = None,
        cost_range: CostRange | None = None,
        output_dir: str | None = None,
    ):
        """Runner arguments from ``cfg.SEARCH``; ``cost_fns`` must hold "flops" / "params" when their limit is set.

        The caller picks the FLOPs callable matching SEARCH.FLOPS_MODE; the mode and the detector
        input size are recorded in the state and in best_arch.json.
        """
        validate_search_config(cfg)
        s = cfg.SEARCH
        return {
            "space": space,
            "strategy": build_search_strategy(cfg, space),
            "fitness": fitness,
            "metric": s.METRIC,
            "constraints": CostConstraints(
                cost_fns,
                {"flops": s.FLOPS_LIMIT, "params": s.PARAMS_LIMIT, "latency": s.LATENCY.LIMIT},
                cost_range=cost_range,
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

    def register_hooks(self, hooks: Sequence[SearchHook]) -> None:
        """Add reporting hooks, called in order after the ones registered before."""
        for hook in hooks:
            hook.runner = weakref.proxy(self)
        self._hooks.extend(hooks)

    @property
    def budget(self) -> int:
        """Number of candidate slots of the whole search (evaluations are at most this many)."""
        return self.strategy.population * self.strategy.generations

    @property
    def history(self) -> List[dict]:
        """Statistics of every finished generation, oldest first (generations rebuilt from the log included)."""
        return self._history

    @property
    def replaying(self) -> bool:
        """Whether logged results of a resumed search remain to be replayed (their generations were reported)."""
        return bool(self._replay)

    def run(self, resume: bool = False) -> SearchResult:
        """Run (``resume=True``: continue from ``output_dir/search_state.json``, or rebuild it from the log) to the end.

        A new search (``resume=False``) refuses to start where a search's files exist (``SearchExistsError``).
        """
        self.constraints.check_feasible()
        self._start(resume)
        self._run_loop()
        result = self.result()
        self._check_finite(result)
        for hook in self._hooks:
            hook.after_search(result)
        return result

    def check_start(self, resume: bool = False) -> None:
        """Raise now what ``run(resume)`` would raise before its first evaluation, writing nothing.

        Checks the cost limits against the exact cost range, an existing search (new search), the state or the
        log and its match with these settings (resume). It loads the saved state into this runner: run another.
        """
        self.constraints.check_feasible()
        self._start(resume, write=False)

    def result(self) -> SearchResult:
        """Current top-k (best first) with the history so far."""
        topk = [self._candidate(key) for key, _ in self.strategy.topk]
        front = [self._candidate(key) for key in self.strategy.front()]
        return SearchResult(
            best=topk[0], topk=topk, history=list(self._history), n_evaluated=len(self.records), front=front
        )

    # ------------------------------------------------------------------ main loop

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

    def _key(self, arch: Any) -> str:
        """Memo key of ``arch`` (validates it through the space)."""
        key = self.space.encode(arch)
        if not isinstance(key, str):
            raise ValueError(
                f"{type(self.space).__name__}.encode must return a str (it keys the JSON memo), "
                f"got {type(key).__name__}"
            )
        return key

    def _is_legal(self, arch: Any) -> bool:
        """Legal = not evaluated in an earlier generation and within every cost limit."""
        key = self._key(arch)
        if key in self.records:
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
                if key not in self.records and key not in batch:
                    batch.append(key)
                end += 1
            if batch:
                self._evaluate_batch(batch)
            self._num_done = end
            self._save_state()

    def _evaluate_batch(self, keys: List[str]) -> None:
        """Record new candidates: results of a replayed log first, the others from one fitness call."""
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
        """Evaluate new candidates in one fitness call; record them in the memo and the log."""
        archs = [self.space.decode(key) for key in keys]
        start = time.perf_counter()
        results = self.fitness(archs)
        seconds = (time.perf_counter() - start) / len(keys)
        if not isinstance(results, (list, tuple)) or len(results) != len(archs):
            raise ValueError(
                f"the fitness function must return a list with one metrics dict per candidate: got "
                f"{type(results).__name__} of length {len(results) if hasattr(results, '__len__') else '?'} "
                f"for {len(archs)} candidates"
            )
        log_lines = []
        for key, arch, raw_metrics in zip(keys, archs, results):
            record = self._record(key, arch, flatten_metrics(raw_metrics), generation)
            log_lines.append(
                {**record, "arch": arch, "eval_time_s": round(seconds, 6), "settings": self.settings_digest}
            )
            for hook in self._hooks:
                hook.after_candidate(record, seconds)
        if self.store is not None:
            self.store.append_log(log_lines)

    def _record(self, key: str, arch: Any, metrics: Dict[str, float | None], generation: int) -> dict:
        """Add one evaluated candidate (flattened metrics) to the memo; return its record."""
        if self.metric not in metrics:
            raise ValueError(
                f"the fitness function's metrics have no '{self.metric}' (the fitness metric, SEARCH.METRIC); "
                f"available: {sorted(metrics)}"
            )
        record = {
            "key": key,
            "generation": generation,
            "index": len(self.records),
            "costs": dict(self.constraints.costs(key, arch)),
            "metrics": metrics,
            "fitness": metrics[self.metric],
        }
        self.records[key] = record
        return record

    def _end_generation(self) -> None:
        """Update the strategy, save the state and report the generation to the hooks."""
        generation = self.strategy.generation
        keys = self._pending
        records = [self.records[key] for key in keys]
        self.strategy.update(keys, [r["fitness"] for r in records], [r["costs"] for r in records])
        stats = self._generation_stats(generation, keys)
        self._history.append(stats)
        self._population = keys
        self._pending = None
        self._num_done = 0
        self._save_state()
        for hook in self._hooks:
            hook.after_generation(stats)

    def _generation_stats(self, generation: int, keys: List[str]) -> dict:
        """Fitness statistics of one generation (distinct candidates) and of the best so far."""
        values = sorted(
            self.records[key]["fitness"] for key in dict.fromkeys(keys) if self.records[key]["fitness"] is not None
        )
        best_key, best_so_far = self.strategy.topk[0]
        best_costs = self.records[best_key]["costs"]
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
            "n_evaluated": len(self.records),
        }

    def _candidate(self, key: str) -> EvaluatedCandidate:
        """The memo entry of ``key`` as an :class:`EvaluatedCandidate`."""
        record = self.records[key]
        return EvaluatedCandidate(
            key=key,
            arch=self.space.decode(key),
            fitness=record["fitness"],
            metrics=dict(record["metrics"]),
            costs=dict(record["costs"]),
            generation=record["generation"],
            index=record["index"],
        )

    # ------------------------------------------------------------------ state

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
            "evaluated": list(self.records.values()),
        }

    def _save_state(self) -> None:
        """Atomically rewrite search_state.json (no-op for an in-memory search)."""
        if self.store is not None:
            self.store.save_state(self._state_dict())

    def _start(self, resume: bool, write: bool = True) -> None:
        """Load the state (resume), or prepare its rebuild from the log, or begin a new search.

        ``write=False`` checks the same things and writes nothing (see :meth:`check_start`).
        """
        if self.store is None:
            return
        if resume and (self._resume_from_state(write) or self._resume_from_log(write)):
            return
        self.store.check_new(resume)
        if write:
            self.store.create(self._state_dict())

    def _resume_from_state(self, write: bool) -> bool:
        """Load a readable search_state.json (False if there is none, or it is unreadable but the log exists)."""
        state = self.store.load_state()
        if state is None:
            return False
        state_path = self.store.path(STATE_FILE)
        check_same_settings(state["fingerprint"], self.fingerprint, state_path)
        self.strategy.load_state_dict(state["strategy"])
        self._pending = state["pending"]
        self._num_done = state["num_done"]
        self._population = state["population"]
        self._history = state["history"]
        self.records = {record["key"]: record for record in state["evaluated"]}
        self.store.reconcile_log(len(self.records), write)
        logger.info(
            "Resuming search from %s: generation %d/%d, %d candidates evaluated",
            state_path,
            self.strategy.generation,
            self.strategy.generations,
            len(self.records),
        )
        return True

    def _resume_from_log(self, write: bool) -> bool:
        """Prepare to rebuild the state by replaying search_log.jsonl (False if there is no log)."""
        logged = self.store.logged_results(write)
        if logged is None:
            return False
        self._replay, count = logged
        self._replay_source = self.store.path(LOG_FILE)
        digest = self.settings_digest  # a log of an older version has none: the replay alone checks it
        other = [entry for entry in self._replay.values() if entry.get("settings", digest) != digest]
        if other:
            raise ValueError(
                f"{self._replay_source} was scored under other settings than this run's: {len(other)} of its "
                f"candidates (the first: {other[0]['index']}) have the settings digest {other[0]['settings']!r}, "
                f"this run {digest!r}. {STATE_FILE}, which names the settings, is lost, so it cannot be "
                f"rebuilt: resume with the settings and MODEL.WEIGHTS the search ran with, or {NEW_SEARCH_HELP}"
            )
        if not write:
            self._check_replay()
        logger.info(
            "Rebuilding the search state from the %d candidates of %s (none is evaluated again)",
            count,
            self._replay_source,
        )
        return True

    def _check_replay(self) -> None:
        """Replay the log in memory on a copy of the strategy: fail now if this search does not reproduce it."""
        probe = SearchRunner(
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
