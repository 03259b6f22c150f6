"""The one-shot DetNAS supernet (small space) fine-tuned in a Faster R-CNN FPN on the embedded shapes data, one
uniformly sampled path per iteration: the LazyConfig counterpart of configs/shapes/supernet_fpn.yaml.

    python lazy_train_net.py --config-file configs/lazy/supernet_fpn_shapes.py [--resume]
"""

from detectron2.config import LazyCall as L

from detnas_d2.engine.path_sampling import PathSamplingHook

from .faster_rcnn_detnas_fpn_shapes import dataloader, lr_multiplier, model, optimizer, shapes, train

model.backbone.bottom_up.arch = None  # supernet: every candidate, the path is set before each step
train.output_dir = "output/lazy_supernet_fpn_shapes"

# yacs: SUPERNET.*; sampler "uniform", "flops_binned" (flops_bins=dict(range=..., num_bins=...)) or "fair"
supernet = dict(
    path_sampler=L(PathSamplingHook)(seed=0, sampler="uniform", log_dir="${train.output_dir}"),
    eval=dict(num_paths=5, seed=1, bn_recalib=dict(num_batches=10, batch_size=8)),
)

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "shapes", "supernet", "train"]
