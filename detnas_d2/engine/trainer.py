"""The detnas_d2 trainer: detectron2's ``DefaultTrainer`` with the plugin's model wrapping, loaders and evaluators.

Differences from ``DefaultTrainer``: DDP also works for CPU models (gloo), since detectron2's
``create_ddp_model`` passes ``device_ids=[local_rank]`` which DDP rejects for CPU modules; and every dataset
named in the config is checked (with a clear error) before anything is built.
"""
import logging
import os
import weakref

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase, create_ddp_model
from detectron2.evaluation import COCOEvaluator
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..data.datasets import register_from_config


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
        data_loader = self.build_train_loader(cfg)
        model = self.wrap_model(cfg, model)
        trainer_cls = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self._trainer = trainer_cls(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = DetectionCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

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
