"""Is a trained run's AP spread in its BN statistics? Evaluate its ``model_final.pth`` as saved, then again after
re-estimating every BN layer's statistics on training batches (fvcore's precise BN), and print both APs.

    python benchmarks/ground_truth/bn_check.py <run folder with model_final.pth> <arch> [--batches 100]
"""

import argparse
import os

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("arch")
    parser.add_argument("--batches", type=int, default=100)
    args = parser.parse_args()

    from detectron2.utils.events import EventStorage
    from fvcore.nn.precise_bn import update_bn_stats

    from detnas_d2.cli.defaults import load_cfg
    from detnas_d2.data.datasets import register_from_config
    from detnas_d2.engine import Trainer
    from detnas_d2.modeling.checkpoint import DetNASCheckpointer

    opts = ["MODEL.DETNAS.ARCH", args.arch, "MODEL.WEIGHTS", os.path.join(args.run, "model_final.pth")]
    opts += ["OUTPUT_DIR", os.path.join(args.run, "bn_check"), "DATALOADER.NUM_WORKERS", "0"]
    cfg = load_cfg(argparse.Namespace(config_file="configs/shapes/supernet_fpn.yaml", opts=opts))
    register_from_config(cfg)
    model = Trainer.build_model(cfg)
    DetNASCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    saved = Trainer.test(cfg, model)["bbox"]["AP"]
    model.train()
    with EventStorage(0), torch.no_grad():
        update_bn_stats(model, iter(Trainer.build_train_loader(cfg)), args.batches)
    model.eval()
    recomputed = Trainer.test(cfg, model)["bbox"]["AP"]
    print(f"{args.run}: bbox AP {saved:.2f} with the saved BN statistics, {recomputed:.2f} re-estimated")


if __name__ == "__main__":
    main()
