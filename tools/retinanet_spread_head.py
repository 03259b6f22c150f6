"""Write a DetNAS RetinaNet (COCO-RetinaNet-300M, shapes config) whose trained weights get a re-drawn classification
head (N(0, 0.05) weights, zero bias), so its scores spread over (0, 1) instead of sitting at the prior: a RetinaNet
whose ONNX export can be checked without ties (README *Deploy*).

    python tools/retinanet_spread_head.py <RetinaNet weights .pth> <out.pth>
"""

import argparse

import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model

import detnas_d2  # noqa: F401
from detnas_d2.config import add_detnas_config
from detnas_d2.modeling.checkpoint import DetNASCheckpointer

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("weights", help="trained weights of the shapes COCO-RetinaNet-300M RetinaNet")
parser.add_argument("out", help="where to write the weights with the re-drawn head")
args = parser.parse_args()
cfg = add_detnas_config(get_cfg())
cfg.merge_from_file("configs/shapes/supernet_retinanet.yaml")
cfg.merge_from_list(["MODEL.DETNAS.ARCH", "COCO-RetinaNet-300M"])
model = build_model(cfg)
DetNASCheckpointer(model).load(args.weights)
torch.manual_seed(0)
with torch.no_grad():
    model.head.cls_score.weight.normal_(0, 0.05)
    model.head.cls_score.bias.zero_()
torch.save({"model": model.state_dict()}, args.out)
