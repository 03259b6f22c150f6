"""The trainer of LazyConfig (``.py``) configs, with the guarantees of the yacs :class:`Trainer`.

It follows detectron2's ``tools/lazyconfig_train_net.py`` (``model``, ``dataloader``, ``optimizer``, ``lr_multiplier``,
``train``) and adds: the path-sampling hook for one-shot models (``supernet.path_sampler``, default uniform), the
evaluation of several fixed paths of a supernet (``supernet.eval``), and exact ``--resume``: RNG states, the path
sampler and the training stream are checkpointed, detectron2's ``build_detection_train_loader`` being replaced by
:func:`~detnas_d2.data.resumable_loader.build_resumable_train_loader` with the same arguments.
"""

import copy
import logging
import random
import weakref

from detectron2.config import CfgNode, instantiate
from detectron2.data import build_detection_train_loader
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase, create_ddp_model, hooks
from detectron2.engine.defaults import default_writers
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from omegaconf import OmegaConf

from ..data.resumable_loader import build_resumable_train_loader
from ..modeling.checkpoint import DetNASCheckpointer
from ..parts.model import model_search_space, searchable_parts
from .path_sampling import PathSamplingHook
from .resume import RNGStateHook
from .supernet_eval import PathTester, evaluate_paths
from .trainer import LoaderStateMixin, ddp_options

#: the loaders of ``dataloader.train`` named as strings (a config saved and loaded again)
_LOADER_NAMES = {
    "detectron2.data.build_detection_train_loader",
    "detectron2.data.build.build_detection_train_loader",
    "detnas_d2.data.resumable_loader.build_resumable_train_loader",
}

#: ``supernet.eval`` of a LazyConfig: paths scored when a one-shot model is evaluated (as ``SUPERNET.EVAL``)
DEFAULT_SUPERNET_EVAL = {
    "num_paths": 5,
    "seed": 1,
    "bn_recalib": {"num_batches": 500, "batch_size": 8, "mode": "cumulative", "momentum": 0.1, "seed": 0},
}


def train_seed(cfg) -> int:
    """``train.seed`` when >= 0 (the data order and augmentation), else a seed shared by all ranks."""
    seed = cfg.train.get("seed", -1)
    return seed if seed >= 0 else comm.shared_random_seed()


def resumable_train_loader_node(node):
    """``dataloader.train`` with detectron2's ``build_detection_train_loader`` swapped for the resumable loader
    (same arguments); any other loader is refused, naming it, since ``--resume`` could not continue its stream."""
    target = node.get("_target_")
    if target in (build_detection_train_loader, build_resumable_train_loader) or target in _LOADER_NAMES:
        node = copy.deepcopy(node)
        node._target_ = build_resumable_train_loader
        return node
    raise ValueError(
        f"dataloader.train._target_ = {target!r}: the LazyConfig trainer continues the data stream exactly on "
        "--resume, which it can do for detectron2.data.build_detection_train_loader or "
        "detnas_d2.data.resumable_loader.build_resumable_train_loader only"
    )


def build_lazy_train_loader(cfg):
    """The training loader of ``dataloader.train``, resumable, seeded with :func:`train_seed`."""
    node = resumable_train_loader_node(cfg.dataloader.train)
    for unsupported in ("collate_fn", "seed", "prefetch_factor", "persistent_workers", "pin_memory"):
        if node.get(unsupported) is not None:
            raise ValueError(f"dataloader.train.{unsupported} is not supported by the resumable training loader")
    node.seed = train_seed(cfg)
    return instantiate(node)


def _supernet_settings(cfg) -> dict:
    """The LazyConfig's ``supernet`` dict (empty when it has none)."""
    return cfg.get("supernet", None) or {}


def _path_sampler(cfg, model) -> PathSamplingHook:
    """``supernet.path_sampler`` (a ``L(PathSamplingHook)(...)``) on ``model``, or the uniform default."""
    node = _supernet_settings(cfg).get("path_sampler", None)
    if node is None:
        return PathSamplingHook(model)
    node = copy.deepcopy(node)  # the model goes into a copy: the config stays printable
    node.model = model
    return instantiate(node)


def supernet_eval_settings(cfg) -> dict:
    """:data:`DEFAULT_SUPERNET_EVAL` updated with the LazyConfig's ``supernet.eval``; unknown keys are errors."""
    given = OmegaConf.to_container(OmegaConf.create(_supernet_settings(cfg).get("eval", None) or {}))
    recalib = given.pop("bn_recalib", None) or {}
    for key, found, allowed in (
        ("supernet.eval", given, DEFAULT_SUPERNET_EVAL),
        ("supernet.eval.bn_recalib", recalib, DEFAULT_SUPERNET_EVAL["bn_recalib"]),
    ):
        unknown = sorted(set(found) - set(allowed))
        if unknown:
            raise ValueError(f"{key} keys {unknown} unknown; allowed: {sorted(allowed)}")
    return {**DEFAULT_SUPERNET_EVAL, **given, "bn_recalib": {**DEFAULT_SUPERNET_EVAL["bn_recalib"], **recalib}}


class LazyTrainer(LoaderStateMixin, DefaultTrainer):
    """Trains the ``model`` of a LazyConfig on ``dataloader.train`` as detectron2's lazy script does, resumable
    exactly (``resume_or_load(resume=True)``), one-shot models with a path sampled every iteration."""

    def __init__(self, cfg):
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        model = instantiate(cfg.model)
        model.to(cfg.train.device)
        cfg.optimizer.params.model = model
        optimizer = instantiate(cfg.optimizer)
        data_loader = self.train_loader = build_lazy_train_loader(cfg)
        model = create_ddp_model(model, **ddp_options(model, **cfg.train.get("ddp", {})))
        self._trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, data_loader, optimizer)
        self.checkpointer = DetNASCheckpointer(model, cfg.train.output_dir, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.train.max_iter
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def build_hooks(self):
        """RNG states, the path sampler (one-shot models), then the hooks of detectron2's lazy script."""
        cfg, main = self.cfg, comm.is_main_process()
        ret = [RNGStateHook()]
        if searchable_parts(self.model):
            ret.append(_path_sampler(cfg, self.model))
        ret += [
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            hooks.PeriodicCheckpointer(self.checkpointer, **cfg.train.checkpointer) if main else None,
            hooks.EvalHook(cfg.train.eval_period, self._eval),
            hooks.PeriodicWriter(default_writers(cfg.train.output_dir, self.max_iter), period=cfg.train.log_period)
            if main
            else None,
        ]
        return ret

    def _eval(self):
        self._last_eval_results = self.test(self.cfg, self.model)
        return self._last_eval_results

    def resume_or_load(self, resume=True):
        """Resume from ``train.output_dir``'s last checkpoint, or load ``train.init_checkpoint``."""
        self.checkpointer.resume_or_load(self.cfg.train.init_checkpoint, resume=resume)
        if resume and self.checkpointer.has_checkpoint():
            self.start_iter = self.iter + 1

    def train(self):
        """Train from ``start_iter`` to ``train.max_iter``; the last evaluation's results (None without one)."""
        TrainerBase.train(self, self.start_iter, self.max_iter)
        return getattr(self, "_last_eval_results", None)

    @classmethod
    def test(cls, cfg, model):
        """``dataloader.evaluator`` on ``dataloader.test`` (nothing without an evaluator); a one-shot model is scored
        on ``supernet.eval.num_paths`` fixed random paths, BN recalibrated per path on the training data."""
        if "evaluator" not in cfg.dataloader:
            return {}
        if not searchable_parts(model):
            results = inference_on_dataset(
                model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator)
            )
            if comm.is_main_process():
                print_csv_format(results)
            return results
        settings = supernet_eval_settings(cfg)
        recalib = settings["bn_recalib"]
        space, rng = model_search_space(model), random.Random(settings["seed"])
        paths = [space.sample(rng) for _ in range(settings["num_paths"])]
        train = cfg.dataloader.train
        evaluate = PathTester(
            model,
            "dataloader.test",
            build_test_loader=lambda _: instantiate(cfg.dataloader.test),
            build_evaluator=lambda _: instantiate(cfg.dataloader.evaluator),
            train_mapper=instantiate(train.mapper),
            recalib=CfgNode({key.upper(): value for key, value in recalib.items()}),
            recalib_seed=recalib["seed"],
            recalib_dataset=lambda: instantiate(train.dataset),
            aspect_ratio_grouping=train.get("aspect_ratio_grouping", True),
            num_workers=train.get("num_workers", 0),
        )
        return evaluate_paths(evaluate, model, paths, "dataloader.test")
