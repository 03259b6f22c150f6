"""``search_net.py``'s work: search architectures (or augmentation policies), export the best one.

``SEARCH.EVALUATOR`` picks the fitness: "one_shot" loads the trained supernet and scores its paths (each rank
evaluates its share of each batch of candidates); "proxy" trains a fresh detector per candidate on a short
schedule (all ranks train each candidate together). A one-shot search whose ``SEARCH.SPACE`` also names parts only
a proxy can score (the augmentation policy) runs both, one after the other (:mod:`detnas_d2.search.joint`). Which
parts a search covers and how each is found, exported and costed is :mod:`detnas_d2.parts`. Runs in every
process of a detectron2 ``launch``: rank 0 drives the strategy and writes the files.
"""

import logging

from detectron2.utils import comm

from ..engine.trainer import Trainer
from ..parts import get_part, parse_space, part_names
from ..parts.model import model_search_space, searchable_parts, set_model_arch
from .build import build_fitness, build_search_strategy
from .config import validate_search_config
from .distributed import broadcast_from_main, run_on_every_rank
from .export import export_best
from .fingerprint import fitness_fingerprint
from .hooks import SearchEventWriter
from .joint import has_search, phase_one_config, phase_two_config, proxy_only_parts, write_combined_config
from .one_shot import search_dataset_name
from .proxy import build_proxy_cost_fns, build_proxy_space, export_proxy_best, proxy_fingerprint
from .runner import SearchRunner
from .supernet_weights import load_supernet_weights

logger = logging.getLogger("detnas_d2.search")


def build_cost_fns(cfg, model):
    """``({"flops": f, "params": g, ...}, cost_range)`` of a one-shot search over the model's one-shot parts.

    Each part contributes its own costs (the backbone: "params", "flops" with ``SEARCH.FLOPS_MODE`` "backbone",
    "latency" with ``SEARCH.LATENCY.MODE`` "measure" or "lut"; see :mod:`detnas_d2.parts`). ``SEARCH.FLOPS_MODE``
    "detector" counts the whole detector with the candidate's path at SEARCH.DETECTOR_INPUT_SIZE (fvcore). A cost
    range is known for a single part only.
    """
    from ..cost import detector_flops

    parts = searchable_parts(model)  # once: walking the model in every cost call took milliseconds per candidate
    cost_fns = {}
    for name, module in parts.items():
        for cost, fn in get_part(name).cost_fns(cfg, module).items():
            cost_fns[cost] = _on_part(fn, name, parts)
    if cfg.SEARCH.FLOPS_MODE == "backbone" and "flops" not in cost_fns:
        raise ValueError("SEARCH.FLOPS_MODE 'backbone' needs a one-shot DetNAS backbone; use 'detector'")
    if cfg.SEARCH.FLOPS_MODE == "detector":
        height, width = cfg.SEARCH.DETECTOR_INPUT_SIZE

        def flops(arch):
            set_model_arch(model, arch)
            return detector_flops(model, height, width)

        cost_fns["flops"] = flops
    if cfg.SEARCH.LATENCY.MODE != "off" and "latency" not in cost_fns:
        raise ValueError(
            f"cfg.SEARCH.LATENCY.MODE = {cfg.SEARCH.LATENCY.MODE!r} needs a one-shot DetNAS backbone "
            "(MODEL.DETNAS.ARCH ''); set it 'off' for a neck-only search"
        )
    cost_range = None
    if len(parts) == 1:
        ((name, module),) = parts.items()
        cost_range = get_part(name).cost_range(cfg, module)
    return cost_fns, cost_range


def _on_part(fn, name: str, parts: dict):
    """``fn`` of part ``name``'s architecture as a function of the model-level architecture over ``parts``."""
    if len(parts) == 1:
        return fn
    return lambda arch: fn(arch[name])


def require_one_shot(model):
    """``model`` if it has a one-shot part to search, else a ValueError saying which keys make one."""
    if not searchable_parts(model):
        raise ValueError("search_net.py needs a one-shot model: MODEL.DETNAS.ARCH '' and/or MODEL.NASFPN.ONE_SHOT True")
    return model


def run_search(cfg, resume: bool = False):
    """Run the search ``SEARCH.EVALUATOR`` names (two phases when ``SEARCH.SPACE`` also names parts only a proxy
    can score); returns the result on rank 0 (``None`` elsewhere)."""
    validate_search_config(cfg)
    if cfg.SEARCH.EVALUATOR == "proxy":
        return run_proxy_search(cfg, resume)
    if proxy_only_parts(cfg):
        return run_joint_search(cfg, resume)
    return run_one_shot_search(cfg, resume)


def run_joint_search(cfg, resume: bool = False):
    """Phase 1 one-shot, phase 2 proxy (see :mod:`detnas_d2.search.joint`); each resumes where it stopped.
    Returns ``{"one_shot": result, "proxy": result}`` on rank 0."""
    first = phase_one_config(cfg)
    architecture = run_one_shot_search(first, resume and has_search(first.OUTPUT_DIR))
    comm.synchronize()  # phase 2 reads phase 1's export
    second = phase_two_config(cfg)
    validate_search_config(second)
    policy = run_proxy_search(second, resume and has_search(second.OUTPUT_DIR))
    if not comm.is_main_process():
        return None
    logger.info(f"joint search: combined config {write_combined_config(cfg)}")
    return {"one_shot": architecture, "proxy": policy}


def _runner_factory(cfg, space, fitness, cost_fns, cost_range, eval_batch_size: int, fingerprint_extra):
    """``make_runner(**kwargs)``: a search runner from ``cfg.SEARCH`` (kwargs: e.g. more hooks) whose fingerprint
    also holds ``fingerprint_extra``."""
    args = SearchRunner.from_config(
        cfg, space, fitness, cost_fns=cost_fns, cost_range=cost_range, output_dir=cfg.OUTPUT_DIR
    )
    args["fingerprint_extra"] = {**args["fingerprint_extra"], **fingerprint_extra}
    args["eval_batch_size"] = eval_batch_size

    def make_runner(**kwargs):
        return SearchRunner(**{**args, "strategy": build_search_strategy(cfg, space)}, **kwargs)

    return make_runner


def check_space(cfg, model) -> None:
    """Every part ``SEARCH.SPACE`` names must be a one-shot part of ``model`` or one only a proxy can score (searched
    after it); a one-shot search samples every one-shot part of the supernet, named or not ("" names none)."""
    parts = searchable_parts(model)
    allowed = sorted(parts) + [name for name in part_names() if "one_shot" not in get_part(name).evaluators]
    missing = [name for name in parse_space(cfg.SEARCH.SPACE) if name not in allowed]
    if missing:
        raise ValueError(
            f"cfg.SEARCH.SPACE = {cfg.SEARCH.SPACE!r} is invalid: this model has no one-shot "
            f"{' or '.join(get_part(name).description for name in missing)}; allowed parts: {allowed} "
            "(comma-separated, or '' for the model's one-shot parts). MODEL.DETNAS.ARCH '' builds a one-shot "
            "backbone, MODEL.NASFPN.ONE_SHOT True a one-shot neck"
        )


def one_shot_runner(cfg, model, fitness):
    """``make_runner(**kwargs)`` of a one-shot search over ``model``'s searchable parts."""
    check_space(cfg, model)
    cost_fns, cost_range = build_cost_fns(cfg, model)
    return _runner_factory(
        cfg,
        model_search_space(model),
        fitness,
        cost_fns,
        cost_range,
        cfg.SEARCH.EVAL_BATCH_SIZE * comm.get_world_size(),  # one candidate per rank and call
        fitness_fingerprint(cfg, search_dataset_name(cfg), one_shot=True),
    )


def proxy_runner(cfg, fitness, space=None):
    """``make_runner(**kwargs)`` of a proxy-task search of ``SEARCH.SPACE``."""
    space = build_proxy_space(cfg) if space is None else space
    fingerprint = {**proxy_fingerprint(cfg), **fitness_fingerprint(cfg, search_dataset_name(cfg), one_shot=False)}
    return _runner_factory(
        cfg, space, fitness, build_proxy_cost_fns(cfg, space), None, cfg.SEARCH.EVAL_BATCH_SIZE, fingerprint
    )


def _run(cfg, make_runner, resume: bool):
    """Build the search runner on every rank and run it; the main rank drives it and writes the files."""
    broadcast = broadcast_from_main if comm.get_world_size() > 1 else None
    events = SearchEventWriter(cfg.OUTPUT_DIR) if comm.is_main_process() else None
    try:
        runner = make_runner(hooks=[events] if events is not None else [])
        return run_on_every_rank(runner, resume, is_main=comm.is_main_process(), broadcast=broadcast)
    finally:
        if events is not None:
            events.close()


def export_choice(cfg, result):
    """The candidate to export: Pareto-front member ``SEARCH.EXPORT_RANK`` (by cost), or the best METRIC for -1."""
    rank, size = cfg.SEARCH.EXPORT_RANK, len(result.front)
    if rank < 0:
        return result.best
    if rank >= size:
        raise ValueError(
            f"cfg.SEARCH.EXPORT_RANK = {rank} is invalid: the Pareto front (pareto_front.json) has "
            f"{size} members, so it must be in 0..{size - 1}, or -1 for the best METRIC"
        )
    return result.front[rank]


def export_label(cfg) -> str:
    """How the exported candidate is named in the log."""
    rank = cfg.SEARCH.EXPORT_RANK
    return "best architecture" if rank < 0 else f"Pareto-front member {rank} (by {cfg.SEARCH.OBJECTIVE_COST})"


def run_one_shot_search(cfg, resume: bool = False):
    """Search on the supernet named by ``MODEL.WEIGHTS``; export the best path (or a front member) with its weights."""
    model = require_one_shot(Trainer.build_model(cfg))
    load_supernet_weights(cfg, model)
    fitness = build_fitness(cfg, model=model)
    model = fitness.model
    result = _run(cfg, one_shot_runner(cfg, model, fitness), resume)
    if result is None:
        return None
    chosen = export_choice(cfg, result)
    files = export_best(cfg, model, chosen.arch, fitness.evaluate_one, cfg.OUTPUT_DIR)
    logger.info(
        f"{export_label(cfg)} {chosen.arch}: {cfg.SEARCH.METRIC} = {chosen.fitness}, "
        f"costs {chosen.costs}; exported {files['config']} and {files['weights']}"
    )
    return result


def run_proxy_search(cfg, resume: bool = False):
    """Search ``SEARCH.SPACE`` by training every candidate on the proxy task; export the best one's config."""
    space = build_proxy_space(cfg)
    result = _run(cfg, proxy_runner(cfg, build_fitness(cfg, space=space), space), resume)
    if result is None:
        return None
    chosen = export_choice(cfg, result)
    path = export_proxy_best(cfg, space, chosen.arch, cfg.OUTPUT_DIR)
    logger.info(
        f"{export_label(cfg)} {chosen.arch}: {cfg.SEARCH.METRIC} = {chosen.fitness}, "
        f"costs {chosen.costs}; exported {path} (retrain it: no weights are exported)"
    )
    return result
