#!/usr/bin/env python
"""Train or evaluate a detectron2 model with the detnas_d2 plugin (supernets, searched backbones, NAS-FPN,
AutoAugment). Same command line as detectron2's tools/train_net.py:

    python train_net.py --config-file configs/shapes/faster_rcnn_R18_FPN.yaml --num-gpus 1
    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
"""
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import launch
from detectron2.evaluation import verify_results
from detectron2.utils import comm

import detnas_d2  # noqa: F401  (registers the plugin's components)
from detnas_d2.engine import Trainer
from detnas_d2.engine.defaults import argument_parser, setup_cfg


def main(args):
    cfg = setup_cfg(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
        return results
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def cli(argv=None):
    args = argument_parser().parse_args(argv)
    print("Command Line Args:", args)
    if args.num_gpus * args.num_machines == 1:
        return main(args)  # what launch() would do, keeping main's return value for callers
    return launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
                  dist_url=args.dist_url, args=(args,))


if __name__ == "__main__":
    cli()
