"""``search_net.py``'s work: search architectures (or augmentation policies), export the best one.

``SEARCH.EVALUATOR`` picks the fitness: "one_shot" loads the trained supernet and scores its paths (each rank
evaluates its share of each batch of candidates); "proxy" trains a fresh detector per candidate on a short
schedule (all ranks train each candidate together). Runs in every process of a detectron2 ``launch``: rank 0
drives the strategy and writes the files.
"""
import logging

import torch.distributed as dist
from detectron2.utils import comm

from ..engine.trainer import Trainer
from ..modeling.searchable import backbone_cost_model, model_search_space, searchable_parts, set_model_arch
from .config import validate_search_config
from .engine import SearchEngine
from .evaluator import ShardedEvaluator
from .export import export_best
from .latency import build_latency_cost
from .proxy import ProxyTaskEvaluator, build_proxy_cost_fns, build_proxy_space, export_proxy_best, proxy_fingerprint
from .strategies import build_search_strategy
from .supernet_weights import load_supernet_weights
from .tensorboard import SearchEventWriter

logger = logging.getLogger("detnas_d2.search")


def broadcast_from_main(obj):
    """The main rank's ``obj`` on every rank."""
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def build_cost_fns(cfg, model):
    """``({"flops": f, "params": g}, cost_range)`` per ``SEARCH.FLOPS_MODE`` for the model's one-shot parts.

    "backbone": the DetNAS counter (conv + linear multiply-adds of stem + blocks at 224x224), analytical.
    "detector": fvcore's count of the whole detector with the candidate's path at SEARCH.DETECTOR_INPUT_SIZE.
    Parameters always count the backbone (stem + blocks). With ``SEARCH.LATENCY.MODE`` "measure" or "lut",
    "latency" is the backbone's fixed-subnet milliseconds (see :mod:`detnas_d2.search.latency`).
    """
    from ..cost import detector_flops

    parts = searchable_parts(model)  # once: walking the model in every cost call took milliseconds per candidate
    cost_fns, cost_range = {}, None
    if "backbone" in parts:
        table = backbone_cost_model(model)
        body = (lambda arch: arch["backbone"]) if len(parts) > 1 else (lambda arch: arch)
        cost_fns["params"] = lambda arch: table.params(body(arch))
    if cfg.SEARCH.FLOPS_MODE == "backbone":
        if "backbone" not in parts:
            raise ValueError("SEARCH.FLOPS_MODE 'backbone' needs a one-shot DetNAS backbone; use 'detector'")
        cost_fns["flops"] = lambda arch: table.flops(body(arch))
        if len(parts) == 1:
            def cost_range(name):
                return table.bounds(name) if name in ("flops", "params") else None
    else:
        height, width = cfg.SEARCH.DETECTOR_INPUT_SIZE

        def flops(arch):
            set_model_arch(model, arch)
            return detector_flops(model, height, width)
        cost_fns["flops"] = flops
    if cfg.SEARCH.LATENCY.MODE != "off":
        if "backbone" not in parts:
            raise ValueError(f"cfg.SEARCH.LATENCY.MODE = {cfg.SEARCH.LATENCY.MODE!r} needs a one-shot DetNAS backbone "
                             "(MODEL.DETNAS.ARCH ''); set it 'off' for a neck-only search")
        latency = build_latency_cost(cfg, parts["backbone"].body)
        cost_fns["latency"] = lambda arch: latency(body(arch))
    return cost_fns, cost_range


def require_one_shot(model):
    """``model`` if it has a one-shot part to search, else a ValueError saying which keys make one."""
    if not searchable_parts(model):
        raise ValueError("search_net.py needs a one-shot model: MODEL.DETNAS.ARCH '' and/or MODEL.NASFPN.ONE_SHOT True")
    return model


def run_search(cfg, resume: bool = False):
    """Run the search ``SEARCH.EVALUATOR`` names; returns the result on rank 0 (``None`` elsewhere)."""
    validate_search_config(cfg)
    if cfg.SEARCH.EVALUATOR == "proxy":
        return run_proxy_search(cfg, resume)
    return run_one_shot_search(cfg, resume)


def _engine_factory(cfg, space, evaluator, cost_fns, cost_range, eval_batch_size: int, fingerprint_extra=None):
    """``make_engine(**kwargs)``: a search engine from ``cfg.SEARCH`` (kwargs: the distributed seam)."""
    args = SearchEngine.from_config(cfg, space, evaluator, cost_fns=cost_fns, cost_range=cost_range,
                                    output_dir=cfg.OUTPUT_DIR)
    args["fingerprint_extra"] = {**args["fingerprint_extra"], **(fingerprint_extra or {})}
    args["eval_batch_size"] = eval_batch_size

    def make_engine(**kwargs):
        return SearchEngine(**{**args, "strategy": build_search_strategy(cfg, space)}, **kwargs)
    return make_engine


def one_shot_engine(cfg, model, evaluator):
    """``make_engine(**kwargs)`` of a one-shot search over ``model``'s searchable parts."""
    cost_fns, cost_range = build_cost_fns(cfg, model)
    return _engine_factory(cfg, model_search_space(model), evaluator, cost_fns, cost_range,
                           cfg.SEARCH.EVAL_BATCH_SIZE * comm.get_world_size())  # one candidate per rank and call


def proxy_engine(cfg, evaluator, space=None):
    """``make_engine(**kwargs)`` of a proxy-task search of ``SEARCH.SPACE``."""
    space = build_proxy_space(cfg) if space is None else space
    return _engine_factory(cfg, space, evaluator, build_proxy_cost_fns(cfg, space), None, cfg.SEARCH.EVAL_BATCH_SIZE,
                           proxy_fingerprint(cfg))


def _run_engine(cfg, make_engine, resume: bool):
    """Build the search engine on every rank and run it; the main rank drives it and writes the files."""
    broadcast = broadcast_from_main if comm.get_world_size() > 1 else None
    events = SearchEventWriter(cfg.OUTPUT_DIR) if comm.is_main_process() else None
    try:
        return make_engine(is_main=comm.is_main_process(), broadcast=broadcast,
                           on_generation_end=events).run(resume=resume)
    finally:
        if events is not None:
            events.close()


def export_choice(cfg, result):
    """The candidate to export: Pareto-front member ``SEARCH.EXPORT_RANK`` (by cost), or the best METRIC for -1."""
    rank, size = cfg.SEARCH.EXPORT_RANK, len(result.front)
    if rank < 0:
        return result.best
    if rank >= size:
        raise ValueError(f"cfg.SEARCH.EXPORT_RANK = {rank} is invalid: the Pareto front (pareto_front.json) has "
                         f"{size} members, so it must be in 0..{size - 1}, or -1 for the best METRIC")
    return result.front[rank]


def export_label(cfg) -> str:
    """How the exported candidate is named in the log."""
    rank = cfg.SEARCH.EXPORT_RANK
    return "best architecture" if rank < 0 else f"Pareto-front member {rank} (by {cfg.SEARCH.OBJECTIVE_COST})"


def run_one_shot_search(cfg, resume: bool = False):
    """Search on the supernet named by ``MODEL.WEIGHTS``; export the best path (or a front member) with its weights."""
    model = require_one_shot(Trainer.build_model(cfg))
    load_supernet_weights(cfg, model)
    evaluator = ShardedEvaluator(cfg, model)
    model = evaluator.model
    result = _run_engine(cfg, one_shot_engine(cfg, model, evaluator), resume)
    if result is None:
        return None
    chosen = export_choice(cfg, result)
    files = export_best(cfg, model, chosen.arch, evaluator.evaluate_one, cfg.OUTPUT_DIR)
    logger.info(f"{export_label(cfg)} {chosen.arch}: {cfg.SEARCH.METRIC} = {chosen.fitness}, "
                f"costs {chosen.costs}; exported {files['config']} and {files['weights']}")
    return result


def run_proxy_search(cfg, resume: bool = False):
    """Search ``SEARCH.SPACE`` by training every candidate on the proxy task; export the best one's config."""
    space = build_proxy_space(cfg)
    result = _run_engine(cfg, proxy_engine(cfg, ProxyTaskEvaluator(cfg, space), space), resume)
    if result is None:
        return None
    chosen = export_choice(cfg, result)
    path = export_proxy_best(cfg, space, chosen.arch, cfg.OUTPUT_DIR)
    logger.info(f"{export_label(cfg)} {chosen.arch}: {cfg.SEARCH.METRIC} = {chosen.fitness}, "
                f"costs {chosen.costs}; exported {path} (retrain it: no weights are exported)")
    return result
