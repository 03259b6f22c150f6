"""The one-shot supernet must learn: the embedded recipe's supernet, with a path drawn over all 20 positions at every
step, fits one fixed batch of shapes crops, and paths it never saw together classify that batch.

With independent candidates (the DetNAS reference parametrisation) this stays at the chance loss ln(5) for
thousands of steps; the kernel-shared, zero-initialised supernet of ``configs/shapes`` fits it in about 100.
"""

import glob
import math
import os
import random

import cv2
import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model

import detnas_d2  # noqa: F401
from detnas_d2.config import add_detnas_config
from detnas_d2.data.shapes import ShapesSpec, ensure_shapes
from detnas_d2.modeling import find_detnas_backbone
from detnas_d2.modeling.classifier import HEAD_INPUT_FEATURE

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES_CLS_CONFIG = os.path.join(REPO_ROOT, "configs", "shapes", "supernet_cls.yaml")
STEPS = 150
PER_CLASS = 7


def _fixed_batch():
    """``PER_CLASS`` object crops of each class of the embedded data, as SupernetClassifier inputs."""
    root = os.path.join(ensure_shapes(ShapesSpec()), "cls", "train")
    batch = []
    for label, name in enumerate(sorted(os.listdir(root))):
        for path in sorted(glob.glob(os.path.join(root, name, "*.jpg")))[:PER_CLASS]:
            image = torch.as_tensor(np.ascontiguousarray(cv2.imread(path).transpose(2, 0, 1)))
            batch.append({"image": image, "label": label})
    return batch


def _mean_loss_and_accuracy(model, batch, paths):
    """Loss and top-1 on ``batch`` of each path (BN in training mode: batch statistics), averaged over paths."""
    body = find_detnas_backbone(model).body
    labels = torch.tensor([d["label"] for d in batch])
    losses, accuracies = [], []
    with torch.no_grad():
        for arch in paths:
            body.set_arch(arch)
            features = model.backbone(model.preprocess_image(batch))
            logits = model.classifier_head(features[HEAD_INPUT_FEATURE])
            losses.append(torch.nn.functional.cross_entropy(logits, labels).item())
            accuracies.append((logits.argmax(1) == labels).float().mean().item())
    return float(np.mean(losses)), float(np.mean(accuracies))


def test_embedded_supernet_fits_a_fixed_batch_with_paths_over_all_positions():
    cfg = get_cfg()
    add_detnas_config(cfg)
    cfg.merge_from_file(SHAPES_CLS_CONFIG)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.DETNAS.WIDTH_MULT = 0.25  # tiny: a quarter of the shipped width
    torch.manual_seed(0)
    model = build_model(cfg).train()
    body = find_detnas_backbone(model).body
    batch = _fixed_batch()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    rng = random.Random(0)
    num_positions = len(body.blocks)
    for _ in range(STEPS):
        body.set_arch([rng.randrange(4) for _ in range(num_positions)])
        optimizer.zero_grad(set_to_none=True)
        sum(model(batch).values()).backward()
        optimizer.step()
    unseen = random.Random(1)
    paths = [[unseen.randrange(4) for _ in range(num_positions)] for _ in range(5)]
    loss, accuracy = _mean_loss_and_accuracy(model, batch, paths)
    chance = math.log(5)
    assert loss < 0.25 * chance, f"random-path loss {loss:.3f} after {STEPS} steps (chance {chance:.3f})"
    assert accuracy > 0.9, f"random-path top-1 {accuracy:.2f} on the fitted batch"
