"""Config keys of the architecture search (``cfg.SEARCH``), with defaults from the DetNAS evolutionary
search (megvii-model/DetNAS), and their validation."""

from numbers import Integral, Real

from detectron2.config import CfgNode as CN

from ..cost.runtime_latency import ONNXRUNTIME
from ..parts import get_part, parse_space
from ..utils.config import declare
from .build import FITNESS_REGISTRY, STRATEGY_REGISTRY

#: allowed values of the string-valued keys
FLOPS_MODES = ("backbone", "detector")
BN_RECALIB_MODES = ("cumulative", "ema")
LATENCY_MODES = ("off", "measure", "lut")
LATENCY_CLOCKS = ("wall", "cpu")


def add_search_config(cfg: CN) -> None:
    """Declare every ``SEARCH.*`` key used by the search; calling it twice is harmless."""
    declare(cfg, "SEARCH", CN())
    s = cfg.SEARCH
    # search strategy: "evolution" (DetNAS/SPOS EA), "nsga2" (Pareto front of METRIC vs OBJECTIVE_COST), "random"
    # (same-budget baseline) or "controller" (PPO-trained LSTM)
    declare(s, "STRATEGY", "evolution")
    # cost minimised by "nsga2" next to METRIC: "flops", "params" or any other cost the search computes
    declare(s, "OBJECTIVE_COST", "flops")
    # "nsga2": export member K of pareto_front.json (sorted by cost) instead of the best METRIC; -1 = best METRIC
    declare(s, "EXPORT_RANK", -1)
    # candidates per generation; generation 0 is POPULATION uniform random legal architectures
    declare(s, "POPULATION", 50)
    # number of generations (the initial random one included); budget = POPULATION * GENERATIONS
    declare(s, "GENERATIONS", 20)
    # size of the elitist top-k archive that parents are drawn from
    declare(s, "TOPK", 10)
    # mutation children per generation (DetNAS 20, SPOS 25)
    declare(s, "NUM_MUTATION", 20)
    # crossover children per generation (DetNAS 20, SPOS 25); the rest of POPULATION is random fill
    declare(s, "NUM_CROSSOVER", 20)
    # probability that mutation redraws each gene uniformly
    declare(s, "MUTATION_PROB", 0.1)
    # seed of the strategy's random.Random; the whole search is deterministic given it
    declare(s, "SEED", 0)
    # upper FLOPs limit (multiply-adds, detnas_d2.cost's counter) for a legal candidate; 0 = no limit
    declare(s, "FLOPS_LIMIT", 300e6)
    # what FLOPS_LIMIT counts: "backbone" (detection backbone at 224x224) or "detector" (at DETECTOR_INPUT_SIZE)
    declare(s, "FLOPS_MODE", "backbone")
    # (height, width) of the input used to count FLOPs when FLOPS_MODE == "detector"
    declare(s, "DETECTOR_INPUT_SIZE", (800, 1333))
    # upper parameter-count limit for a legal candidate; 0 = no limit
    declare(s, "PARAMS_LIMIT", 0)
    # key of the fitness function's metrics dict used as fitness (higher is better)
    declare(s, "METRIC", "bbox/AP")
    # each of mutation and crossover gets at most MAX_TRIES_FACTOR x its quota of tries (every try counts)
    declare(s, "MAX_TRIES_FACTOR", 10)
    # random draws allowed to find ONE legal random candidate before the search stops as infeasible
    declare(s, "MAX_RANDOM_TRIES", 10000)
    # candidates handed to the fitness function per call (the one-shot fitness shards them); state saved after each call
    declare(s, "EVAL_BATCH_SIZE", 1)
    # parts searched (detnas_d2.parts), comma-separated: "backbone" (DetNAS), "neck" (NAS-FPN), "autoaug"
    # (AutoAugment policy), e.g. "backbone,neck,autoaug"; "" = every one-shot part of the model. A one-shot search
    # samples every one-shot part of the supernet; parts only a proxy can score (autoaug) then get a proxy phase
    declare(s, "SPACE", "backbone")
    # held-out dataset the fitness is measured on; "" = cfg.DATASETS.TEST[0]. DATASETS.SEARCH_HOLDOUT.SIZE > 0 wins:
    # the search then scores on that held-out split
    declare(s, "DATASET", "")
    # fitness: "one_shot" (supernet paths, BN recalibrated) or "proxy" (train a fresh detector per candidate)
    declare(s, "EVALUATOR", "one_shot")
    declare(s, "PROXY", CN())
    p = s.PROXY
    # training iterations of every proxy detector (replaces SOLVER.MAX_ITER)
    declare(p, "MAX_ITER", 1000)
    # base learning rate of the proxy training; 0 = keep SOLVER.BASE_LR
    declare(p, "BASE_LR", 0.0)
    # iterations where the proxy learning rate decays by SOLVER.GAMMA (replaces SOLVER.STEPS); () = no decay
    declare(p, "STEPS", ())
    # training images of the proxy (a subset of DATASETS.TRAIN fixed by SEARCH.SEED); 0 = all
    declare(p, "TRAIN_SUBSET", 0)
    # seed of every proxy training (weight init, data order, augmentation draws): the same for all candidates
    declare(p, "SEED", 0)
    declare(s, "AUTOAUG", CN())
    # sub-policies per searched AutoAugment policy (paper K = 5)
    declare(s.AUTOAUG, "NUM_SUB_POLICIES", 5)
    # ops per sub-policy, applied in order (paper N = 2)
    declare(s.AUTOAUG, "OPS_PER_SUB_POLICY", 2)
    declare(s, "NECK", CN())
    # merging cells per searched NAS-FPN block (paper 7; the last 5 are the P3-P7 output cells)
    declare(s.NECK, "NUM_CELLS", 7)
    _add_latency_config(s)
    _add_controller_config(s)
    declare(s, "BN_RECALIB", CN())
    b = s.BN_RECALIB
    # train-mode forward passes used to re-estimate BN statistics per candidate (DetNAS 500); 0 = no recalibration
    declare(b, "NUM_BATCHES", 500)
    # images per recalibration iteration over all GPUs (DetNAS 8)
    declare(b, "BATCH_SIZE", 8)
    # "cumulative" (exact average of batch statistics; steadier than an EMA of 0.1) or "ema" (DetNAS)
    declare(b, "MODE", "cumulative")
    # BN momentum used when MODE == "ema" (PyTorch convention, DetNAS 0.1)
    declare(b, "MOMENTUM", 0.1)


def _add_latency_config(s: CN) -> None:
    """Declare ``SEARCH.LATENCY.*``: the measured-latency cost "latency" (milliseconds) of a one-shot backbone."""
    declare(s, "LATENCY", CN())
    lat = s.LATENCY
    # "off" (no latency cost), "measure" (time each candidate's fixed subnet once, cached) or "lut" (per-block table)
    declare(lat, "MODE", "off")
    # upper latency limit in milliseconds for a legal candidate; 0 = no limit (needs MODE != "off" when > 0)
    declare(lat, "LIMIT", 0.0)
    # timing device; "" = MODEL.DEVICE; "onnxruntime" = the fixed subnet exported to ONNX (opset 17) and timed in
    # onnxruntime on CPU, where it is deployed (MODE "measure" only; needs the onnx and onnxruntime packages)
    declare(lat, "DEVICE", "")
    # images per timed forward
    declare(lat, "BATCH_SIZE", 1)
    # (height, width) of the timed input; () = SEARCH.DETECTOR_INPUT_SIZE
    declare(lat, "INPUT_SIZE", ())
    # untimed forwards before the timed ones
    declare(lat, "WARMUP", 5)
    # timed forwards; the cost is their median
    declare(lat, "RUNS", 20)
    # "wall" (elapsed time) or "cpu" (process CPU time, CPU devices only: ignores waiting for a core on a shared CPU)
    declare(lat, "CLOCK", "wall")
    # cache file of measurements and block tables, relative to OUTPUT_DIR (keyed per device, input shape and widths)
    declare(lat, "CACHE_FILE", "latency_cache.json")


def _add_controller_config(s: CN) -> None:
    """Declare ``SEARCH.CONTROLLER.*``, the settings of the PPO-trained LSTM controller strategy."""
    declare(s, "CONTROLLER", CN())
    c = s.CONTROLLER
    # LSTM hidden size (= embedding size of a decision)
    declare(c, "HIDDEN_SIZE", 64)
    # Adam learning rate of the controller
    declare(c, "LR", 0.02)
    # PPO clip range: the probability ratio is clipped to [1 - CLIP, 1 + CLIP]
    declare(c, "CLIP", 0.2)
    # weight of the entropy bonus (summed over decisions) in the PPO loss
    declare(c, "ENTROPY_WEIGHT", 0.01)
    # decay of the moving-average fitness baseline: baseline <- DECAY * baseline + (1 - DECAY) * batch mean
    declare(c, "BASELINE_DECAY", 0.5)
    # full-batch Adam steps on each generation's batch of POPULATION sampled architectures
    declare(c, "PPO_EPOCHS", 10)
    # divide advantages (fitness - baseline) by the batch's fitness standard deviation (scale-free rewards)
    declare(c, "NORMALIZE_ADVANTAGE", True)


def _validate_controller_config(s: CN) -> None:
    """Check ``SEARCH.CONTROLLER.*``."""
    c = s.CONTROLLER
    for key in ("HIDDEN_SIZE", "PPO_EPOCHS"):
        if not _is_int(c[key]) or c[key] < 1:
            _fail(f"SEARCH.CONTROLLER.{key}", c[key], "must be an integer >= 1")
    for key in ("LR", "CLIP"):
        if not _is_number(c[key]) or not c[key] > 0:
            _fail(f"SEARCH.CONTROLLER.{key}", c[key], "must be a number > 0")
    if not _is_number(c.ENTROPY_WEIGHT) or c.ENTROPY_WEIGHT < 0:
        _fail("SEARCH.CONTROLLER.ENTROPY_WEIGHT", c.ENTROPY_WEIGHT, "must be a number >= 0")
    if not _is_number(c.BASELINE_DECAY) or not 0.0 <= c.BASELINE_DECAY < 1.0:
        _fail("SEARCH.CONTROLLER.BASELINE_DECAY", c.BASELINE_DECAY, "must be a number in [0, 1)")
    if not isinstance(c.NORMALIZE_ADVANTAGE, bool):
        _fail("SEARCH.CONTROLLER.NORMALIZE_ADVANTAGE", c.NORMALIZE_ADVANTAGE, "must be True or False")


def _is_int(value) -> bool:
    """True for integers (bool excluded)."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    """True for real numbers (bool excluded)."""
    return isinstance(value, Real) and not isinstance(value, bool)


def _registered(registry) -> tuple:
    """The names of a registry's entries, in registration order."""
    return tuple(name for name, _ in registry)


def _fail(key: str, value, allowed: str) -> None:
    """Raise the ValueError naming the config key, its value and what is allowed."""
    raise ValueError(f"cfg.{key} = {value!r} is invalid: {allowed}")


def validate_search_config(cfg: CN) -> None:
    """Raise ``ValueError`` naming the first ``SEARCH.*`` key whose value is out of range."""
    s = cfg.SEARCH
    if s.STRATEGY not in STRATEGY_REGISTRY:
        _fail("SEARCH.STRATEGY", s.STRATEGY, f"must be one of {_registered(STRATEGY_REGISTRY)}")
    for key in ("POPULATION", "GENERATIONS", "TOPK", "MAX_TRIES_FACTOR", "MAX_RANDOM_TRIES", "EVAL_BATCH_SIZE"):
        if not _is_int(s[key]) or s[key] < 1:
            _fail(f"SEARCH.{key}", s[key], "must be an integer >= 1")
    for key in ("NUM_MUTATION", "NUM_CROSSOVER", "SEED"):
        if not _is_int(s[key]) or s[key] < 0:
            _fail(f"SEARCH.{key}", s[key], "must be an integer >= 0")
    if s.NUM_MUTATION + s.NUM_CROSSOVER > s.POPULATION:
        _fail(
            "SEARCH.NUM_MUTATION",
            s.NUM_MUTATION,
            f"NUM_MUTATION + NUM_CROSSOVER ({s.NUM_MUTATION} + {s.NUM_CROSSOVER}) "
            f"must not exceed POPULATION ({s.POPULATION})",
        )
    if not _is_number(s.MUTATION_PROB) or not 0.0 <= s.MUTATION_PROB <= 1.0:
        _fail("SEARCH.MUTATION_PROB", s.MUTATION_PROB, "must be a number in [0, 1]")
    for key in ("FLOPS_LIMIT", "PARAMS_LIMIT"):
        if not _is_number(s[key]) or s[key] < 0:
            _fail(f"SEARCH.{key}", s[key], "must be a number >= 0 (0 = no limit)")
    if s.FLOPS_MODE not in FLOPS_MODES:
        _fail("SEARCH.FLOPS_MODE", s.FLOPS_MODE, f"must be one of {FLOPS_MODES}")
    size = s.DETECTOR_INPUT_SIZE
    if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(_is_int(v) and v > 0 for v in size):
        _fail("SEARCH.DETECTOR_INPUT_SIZE", size, "must be (height, width) with two positive integers")
    if not isinstance(s.METRIC, str) or not s.METRIC:
        _fail("SEARCH.METRIC", s.METRIC, "must be a non-empty metric name such as 'bbox/AP'")
    _validate_multi_objective(s)
    names = parse_space(s.SPACE)
    if not isinstance(s.DATASET, str):
        _fail("SEARCH.DATASET", s.DATASET, "must be a dataset name or '' (= DATASETS.TEST[0])")
    if s.EVALUATOR not in FITNESS_REGISTRY:
        _fail("SEARCH.EVALUATOR", s.EVALUATOR, f"must be one of {_registered(FITNESS_REGISTRY)}")
    if s.EVALUATOR == "one_shot" and names and all("one_shot" not in get_part(name).evaluators for name in names):
        _fail(
            "SEARCH.EVALUATOR",
            s.EVALUATOR,
            f"SEARCH.SPACE {s.SPACE!r} needs 'proxy' (no supernet holds {', '.join(names)}; name a one-shot part "
            "too for a joint search)",
        )
    _validate_proxy_config(s)
    _validate_latency_config(s)
    _validate_controller_config(s)
    b = s.BN_RECALIB
    if not _is_int(b.NUM_BATCHES) or b.NUM_BATCHES < 0:
        _fail("SEARCH.BN_RECALIB.NUM_BATCHES", b.NUM_BATCHES, "must be an integer >= 0 (0 = no recalibration)")
    if not _is_int(b.BATCH_SIZE) or b.BATCH_SIZE < 1:
        _fail("SEARCH.BN_RECALIB.BATCH_SIZE", b.BATCH_SIZE, "must be an integer >= 1")
    if b.MODE not in BN_RECALIB_MODES:
        _fail("SEARCH.BN_RECALIB.MODE", b.MODE, f"must be one of {BN_RECALIB_MODES}")
    if not _is_number(b.MOMENTUM) or not 0.0 < b.MOMENTUM <= 1.0:
        _fail("SEARCH.BN_RECALIB.MOMENTUM", b.MOMENTUM, "must be a number in (0, 1]")


def _validate_multi_objective(s: CN) -> None:
    """Check ``SEARCH.OBJECTIVE_COST`` and ``SEARCH.EXPORT_RANK`` (a front member exists only for "nsga2")."""
    if not isinstance(s.OBJECTIVE_COST, str) or not s.OBJECTIVE_COST:
        _fail("SEARCH.OBJECTIVE_COST", s.OBJECTIVE_COST, "must be a cost name such as 'flops' or 'params'")
    if not _is_int(s.EXPORT_RANK) or s.EXPORT_RANK < -1:
        _fail("SEARCH.EXPORT_RANK", s.EXPORT_RANK, "must be an integer >= 0 (a front member) or -1 (best METRIC)")
    if s.EXPORT_RANK >= 0 and s.STRATEGY != "nsga2":
        _fail("SEARCH.EXPORT_RANK", s.EXPORT_RANK, f"needs SEARCH.STRATEGY 'nsga2' (got {s.STRATEGY!r}); use -1")


def _validate_proxy_config(s: CN) -> None:
    """Check the proxy-task schedule (``SEARCH.PROXY``) and the sizes of the proxy-searched spaces."""
    p = s.PROXY
    if not _is_int(p.MAX_ITER) or p.MAX_ITER < 1:
        _fail("SEARCH.PROXY.MAX_ITER", p.MAX_ITER, "must be an integer >= 1")
    if not _is_number(p.BASE_LR) or p.BASE_LR < 0:
        _fail("SEARCH.PROXY.BASE_LR", p.BASE_LR, "must be a number >= 0 (0 = keep SOLVER.BASE_LR)")
    steps = p.STEPS
    if (
        not isinstance(steps, (list, tuple))
        or not all(_is_int(v) and 0 < v < p.MAX_ITER for v in steps)
        or list(steps) != sorted(set(steps))
    ):
        _fail(
            "SEARCH.PROXY.STEPS",
            steps,
            f"must be strictly increasing integers in (0, SEARCH.PROXY.MAX_ITER = {p.MAX_ITER}), or ()",
        )
    for key in ("TRAIN_SUBSET", "SEED"):
        if not _is_int(p[key]) or p[key] < 0:
            _fail(f"SEARCH.PROXY.{key}", p[key], "must be an integer >= 0")
    for key in ("NUM_SUB_POLICIES", "OPS_PER_SUB_POLICY"):
        if not _is_int(s.AUTOAUG[key]) or s.AUTOAUG[key] < 1:
            _fail(f"SEARCH.AUTOAUG.{key}", s.AUTOAUG[key], "must be an integer >= 1")
    if not _is_int(s.NECK.NUM_CELLS) or s.NECK.NUM_CELLS < 5:
        _fail("SEARCH.NECK.NUM_CELLS", s.NECK.NUM_CELLS, "must be an integer >= 5 (the last 5 cells output P3-P7)")


def _validate_latency_config(s: CN) -> None:
    """Check ``SEARCH.LATENCY``: mode, limit, timing schedule, input size and cache file."""
    lat = s.LATENCY
    if lat.MODE not in LATENCY_MODES:
        _fail("SEARCH.LATENCY.MODE", lat.MODE, f"must be one of {LATENCY_MODES}")
    if not _is_number(lat.LIMIT) or lat.LIMIT < 0:
        _fail("SEARCH.LATENCY.LIMIT", lat.LIMIT, "must be a number >= 0 in milliseconds (0 = no limit)")
    if lat.LIMIT > 0 and lat.MODE == "off":
        _fail("SEARCH.LATENCY.LIMIT", lat.LIMIT, "needs SEARCH.LATENCY.MODE 'measure' or 'lut' (it is 'off')")
    for key, low in (("BATCH_SIZE", 1), ("RUNS", 1), ("WARMUP", 0)):
        if not _is_int(lat[key]) or lat[key] < low:
            _fail(f"SEARCH.LATENCY.{key}", lat[key], f"must be an integer >= {low}")
    size = lat.INPUT_SIZE
    if not isinstance(size, (list, tuple)) or (
        len(size) != 0 and (len(size) != 2 or not all(_is_int(v) and v > 0 for v in size))
    ):
        _fail("SEARCH.LATENCY.INPUT_SIZE", size, "must be (height, width) with two positive integers, or ()")
    if lat.CLOCK not in LATENCY_CLOCKS:
        _fail("SEARCH.LATENCY.CLOCK", lat.CLOCK, f"must be one of {LATENCY_CLOCKS}")
    if not isinstance(lat.DEVICE, str):
        _fail(
            "SEARCH.LATENCY.DEVICE",
            lat.DEVICE,
            f"must be a torch device name such as 'cuda' or 'cpu', '{ONNXRUNTIME}' or ''",
        )
    if lat.DEVICE == ONNXRUNTIME and lat.MODE == "lut":
        _fail(
            "SEARCH.LATENCY.DEVICE",
            lat.DEVICE,
            "times whole exported networks: use it with SEARCH.LATENCY.MODE 'measure' ('lut' needs a torch device)",
        )
    if not isinstance(lat.CACHE_FILE, str) or not lat.CACHE_FILE:
        _fail("SEARCH.LATENCY.CACHE_FILE", lat.CACHE_FILE, "must be a non-empty file name")
