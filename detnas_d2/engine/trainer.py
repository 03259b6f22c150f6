"""The detnas_d2 trainer: detectron2's ``DefaultTrainer`` with the plugin's model wrapping, loaders and evaluators.

Differences from ``DefaultTrainer``: DDP also works for CPU models (gloo), since detectron2's
``create_ddp_model`` passes ``device_ids=[local_rank]`` which DDP rejects for CPU modules; every dataset
named in the config is checked (with a clear error) before anything is built; and ``--resume`` continues the
data stream and RNG states where the checkpoint left them, so a resumed run repeats an uninterrupted one.
"""

import logging
import os
import random
import weakref
from collections import OrderedDict

from detectron2.data import MetadataCatalog, build_detection_test_loader, get_detection_dataset_dicts
from detectron2.data.build import _train_loader_from_config
from detectron2.data.samplers import TrainingSampler
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase, create_ddp_model
from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..data.classification import build_test_loader_for, is_classification_dataset
from ..data.datasets import register_from_config
from ..data.mappers import build_test_mapper, build_train_mapper
from ..data.registration import guard_bad_images
from ..data.resumable_loader import build_resumable_train_loader
from ..evaluation import ClassificationEvaluator
from ..modeling.checkpoint import DetNASCheckpointer
from ..parts.model import model_search_space, searchable_parts
from .config import check_solver_config, check_supernet_eval_config
from .learning_alarm import LearningAlarmHook
from .lr_scheduler import build_lr_scheduler
from .path_sampling import PathSamplingHook
from .resume import RNGStateHook
from .supernet_eval import PathTester, evaluate_paths


class LoaderStateMixin:
    """Trainer state plus the training loader's stream position (rank 0's), for exact ``--resume``; mixed into a
    ``DefaultTrainer`` subclass whose ``train_loader`` is a :class:`ResumableTrainLoader`."""

    def state_dict(self):
        """detectron2's trainer state plus the training loader's stream position (rank 0's)."""
        state = super().state_dict()
        state["data_loader"] = self.train_loader.state_dict()
        return state

    def load_state_dict(self, state_dict):
        """Restore the trainer; the loader continues where the checkpoint's left off (other ranks, and
        checkpoints without a loader state, skip the batches of the iterations done)."""
        super().load_state_dict(state_dict)
        if "data_loader" in state_dict and comm.get_rank() == 0:
            self.train_loader.load_state_dict(state_dict["data_loader"])
        else:
            self.train_loader.skip_batches(self.iter + 1)


def ddp_options(model, **options) -> dict:
    """``create_ddp_model`` keyword arguments: one-shot models run one path per step, so DDP must expect unused
    parameters; CPU models get ``device_ids=None`` (detectron2 would pass the local rank, which DDP rejects)."""
    options = {"broadcast_buffers": False, **options}
    options["find_unused_parameters"] = bool(options.get("find_unused_parameters")) or bool(searchable_parts(model))
    if next(model.parameters()).device.type == "cpu":
        options["device_ids"] = None
    return options


class Trainer(LoaderStateMixin, DefaultTrainer):
    """``DefaultTrainer`` whose model wrapping and component builders are overridable class methods."""

    def __init__(self, cfg):
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        register_from_config(cfg)
        check_solver_config(cfg)
        check_supernet_eval_config(cfg)
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.train_loader = self.build_train_loader(cfg)
        model = self.wrap_model(cfg, model)
        trainer_cls = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self._trainer = trainer_cls(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = DetNASCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def build_hooks(self):
        hooks = [RNGStateHook()]
        if searchable_parts(self.model):
            hooks.append(PathSamplingHook(self.cfg, self.model))
        if self.cfg.TRAIN_ALARM.ENABLED:
            hooks.append(LearningAlarmHook(self.cfg))
        return hooks + super().build_hooks()

    @classmethod
    def build_train_mapper(cls, cfg):
        """The mapper named by ``DATALOADER.MAPPER_NAME`` (AutoAugment when ``INPUT.AUTOAUGMENT.ENABLED``), with
        unreadable images handled as ``DATALOADER.ON_BAD_IMAGE`` says."""
        return guard_bad_images(cfg, build_train_mapper(cfg), is_train=True)

    @classmethod
    def build_test_mapper(cls, cfg):
        """The inference mapper; an unreadable image always fails, naming the file."""
        return guard_bad_images(cfg, build_test_mapper(cfg), is_train=False)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        if is_classification_dataset(dataset_name):
            return build_test_loader_for(cfg, dataset_name)
        return build_detection_test_loader(cfg, dataset_name, mapper=cls.build_test_mapper(cfg))

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        """detectron2's schedulers plus "WarmupLinearLR" (linear decay to zero, the DetNAS/SPOS recipe)."""
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_sampler(cls, cfg, dataset):
        """``DATALOADER.SAMPLER_TRAIN`` for ``dataset``; the default ``TrainingSampler`` is seeded with ``SEED``."""
        if cfg.DATALOADER.SAMPLER_TRAIN == "TrainingSampler":
            return TrainingSampler(len(dataset), seed=cfg.SEED if cfg.SEED >= 0 else None)
        unused_mapper = lambda record: record  # noqa: E731  (detectron2 would build a DatasetMapper otherwise)
        return _train_loader_from_config(cfg, mapper=unused_mapper, dataset=dataset)["sampler"]

    @classmethod
    def build_train_loader(cls, cfg):
        """A :class:`ResumableTrainLoader`: each sample's augmentation is seeded from ``SEED`` and its stream
        position, so a resumed run sees the same batches as an uninterrupted one for any ``NUM_WORKERS``."""
        dataset = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
        sampler = cls.build_train_sampler(cfg, dataset)
        seed = cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()
        return build_resumable_train_loader(
            dataset,
            sampler=sampler,
            mapper=cls.build_train_mapper(cfg),
            total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
            seed=seed,
            num_workers=cfg.DATALOADER.NUM_WORKERS,
            aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        )

    @classmethod
    def wrap_model(cls, cfg, model):
        """Wrap in DDP when running several processes; CPU models get ``device_ids=None``.

        One-shot models run one path per step, so DDP must expect unused parameters.
        """
        return create_ddp_model(model, **ddp_options(model))

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """The evaluator of the dataset's ``evaluator_type``, as detectron2's tools/train_net.py picks it:
        "coco" -> COCOEvaluator, "pascal_voc" -> PascalVOCDetectionEvaluator (the 2007 11-point metric for
        VOC2007), classification datasets -> ClassificationEvaluator."""
        if is_classification_dataset(dataset_name):
            return ClassificationEvaluator(dataset_name)
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", "coco")
        if evaluator_type == "pascal_voc":
            return PascalVOCDetectionEvaluator(dataset_name)
        if evaluator_type == "coco":
            return COCOEvaluator(dataset_name, output_dir=output_folder)
        raise NotImplementedError(
            f"dataset '{dataset_name}' has evaluator_type {evaluator_type!r}; detnas_d2 "
            "evaluates 'coco', 'pascal_voc' and classification datasets"
        )

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """detectron2's evaluation; a one-shot model is scored on ``SUPERNET.EVAL.NUM_PATHS`` fixed random paths
        (BN recalibrated per path as ``SUPERNET.EVAL.BN_RECALIB`` says), reporting each path and their mean. A fixed
        model is recalibrated the same way first when ``SUPERNET.EVAL.RECALIBRATE_FIXED``."""
        register_from_config(cfg)
        check_supernet_eval_config(cfg)
        if evaluators is not None:
            return super().test(cfg, model, evaluators)
        if searchable_parts(model):
            return cls.test_paths(cfg, model, cls.eval_paths(cfg, model))
        if cfg.SUPERNET.EVAL.RECALIBRATE_FIXED:
            return cls.test_paths(cfg, model, [None])
        return super().test(cfg, model, evaluators)

    @staticmethod
    def eval_paths(cfg, model):
        """The fixed random paths scored when a one-shot model is evaluated."""
        space, rng = model_search_space(model), random.Random(cfg.SUPERNET.EVAL.SEED)
        return [space.sample(rng) for _ in range(cfg.SUPERNET.EVAL.NUM_PATHS)]

    @classmethod
    def test_paths(cls, cfg, model, paths):
        """Per-dataset results: the mean over ``paths`` under each task, and each path under ``<task>/path<i>``
        (one ``None`` path: the model as built, BN recalibrated)."""
        results = OrderedDict()
        for dataset_name in cfg.DATASETS.TEST:
            evaluate = PathTester(
                cfg,
                model,
                dataset_name,
                build_test_loader=lambda name: cls.build_test_loader(cfg, name),
                build_evaluator=lambda name: cls.build_evaluator(cfg, name),
                train_mapper=cls.build_train_mapper(cfg),
                recalib=cfg.SUPERNET.EVAL.BN_RECALIB,
                recalib_seed=cfg.SUPERNET.EVAL.BN_RECALIB.SEED,
            )
            results[dataset_name] = evaluate_paths(evaluate, model, paths, dataset_name)
        return results[cfg.DATASETS.TEST[0]] if len(results) == 1 else results
