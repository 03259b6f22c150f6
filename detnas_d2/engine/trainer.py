"""The detnas_d2 trainer: detectron2's ``DefaultTrainer`` with the plugin's model wrapping, loaders and evaluators.

Differences from ``DefaultTrainer``: DDP also works for CPU models (gloo), since detectron2's
``create_ddp_model`` passes ``device_ids=[local_rank]`` which DDP rejects for CPU modules; every dataset
named in the config is checked (with a clear error) before anything is built; and ``--resume`` continues the
data stream and RNG states where the checkpoint left them, so a resumed run repeats an uninterrupted one.
"""
import logging
import os
import weakref

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetMapper, build_detection_train_loader, get_detection_dataset_dicts
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase, create_ddp_model
from detectron2.evaluation import COCOEvaluator
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..data.datasets import register_from_config
from .resume import ResumableTrainingSampler, RNGStateHook


class Trainer(DefaultTrainer):
    """``DefaultTrainer`` whose model wrapping and component builders are overridable class methods."""

    def __init__(self, cfg):
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        register_from_config(cfg)
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader, self.train_sampler = self.build_resumable_train_loader(cfg)
        model = self.wrap_model(cfg, model)
        trainer_cls = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self._trainer = trainer_cls(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = DetectionCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def build_hooks(self):
        return [RNGStateHook()] + super().build_hooks()

    def resume_or_load(self, resume=True):
        super().resume_or_load(resume=resume)
        if self.start_iter and self.train_sampler is not None:
            per_rank_batch = self.cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size()
            self.train_sampler.skip(self.start_iter * per_rank_batch)

    @classmethod
    def build_train_mapper(cls, cfg):
        return DatasetMapper(cfg, is_train=True)

    @classmethod
    def build_resumable_train_loader(cls, cfg):
        """The training loader and its sampler (``None`` where the config asks for another sampler kind)."""
        dataset = get_detection_dataset_dicts(
            cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
        sampler = None
        if cfg.DATALOADER.SAMPLER_TRAIN == "TrainingSampler":
            sampler = ResumableTrainingSampler(len(dataset), seed=cfg.SEED if cfg.SEED >= 0 else None)
        seed = cfg.SEED if cfg.SEED >= 0 else None  # worker seeds from a private generator, not global RNG
        loader = build_detection_train_loader(
            cfg, mapper=cls.build_train_mapper(cfg), dataset=dataset if sampler else None, sampler=sampler, seed=seed)
        return loader, sampler

    @classmethod
    def build_train_loader(cls, cfg):
        return cls.build_resumable_train_loader(cfg)[0]

    @classmethod
    def wrap_model(cls, cfg, model):
        """Wrap in DDP when running several processes; CPU models get ``device_ids=None``."""
        kwargs = {"broadcast_buffers": False}
        if next(model.parameters()).device.type == "cpu":
            kwargs["device_ids"] = None
        return create_ddp_model(model, **kwargs)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return COCOEvaluator(dataset_name, output_dir=output_folder)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        register_from_config(cfg)
        return super().test(cfg, model, evaluators)
