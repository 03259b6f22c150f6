#!/usr/bin/env python
"""Visual check of an AutoAugment policy: a grid of augmented training images with their boxes and class names.

Panel k applies sub-policy k mod K of the configured policy (cfg.INPUT.AUTOAUGMENT) to image k of the dataset,
at the original resolution, exactly as AutoAugmentDatasetMapper does before resizing; ops marked "*" fired.
In "drop" box mode, boxes whose visible area vanished are not drawn.

    python tools/visualize_autoaugment.py --config-file configs/x.yaml --num 16 --output grid.png \
        [--dataset shapes_train] [--seed 0] [KEY VALUE ...]
"""

import argparse
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.data import detection_utils as utils  # noqa: E402
from detectron2.data import transforms as T  # noqa: E402
from detectron2.utils.visualizer import Visualizer  # noqa: E402

from detnas_d2.config import add_detnas_config, merge_from_file, merge_from_list  # noqa: E402
from detnas_d2.data.autoaugment import nonempty_boxes  # noqa: E402
from detnas_d2.data.datasets import register_builtin_datasets  # noqa: E402
from detnas_d2.data.mappers import build_autoaugment, non_crowd_boxes  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True, help="detectron2 YAML config")
    parser.add_argument("--num", type=int, default=16, help="number of panels")
    parser.add_argument("--output", default="autoaugment_grid.png", help="image file to write")
    parser.add_argument("--dataset", default=None, help="registered dataset (default: cfg.DATASETS.TRAIN[0])")
    parser.add_argument("--seed", type=int, default=0, help="numpy seed for the augmentation draws")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides as KEY VALUE pairs")
    args = parser.parse_args(argv)
    if args.num < 1:
        parser.error(f"--num must be positive, got {args.num}")
    return args


def setup_cfg(args):
    """detectron2 defaults + detnas_d2 keys + the config file + command-line overrides; the built-in datasets
    registered."""
    cfg = get_cfg()
    add_detnas_config(cfg)
    merge_from_file(cfg, args.config_file)
    merge_from_list(cfg, args.opts)
    cfg.freeze()
    register_builtin_datasets()  # e.g. --dataset shapes_train
    return cfg


def _entry_label(entry, transform) -> str:
    name, prob, level = entry
    fired = "" if isinstance(transform, T.NoOpTransform) else "*"
    return f"{name}({prob:g},{level}){fired}"


def augmented_panels(cfg, dataset_name: str, num: int):
    """``num`` tuples (RGB image, boxes, class ids, title), panel k using sub-policy k mod K."""
    dicts = DatasetCatalog.get(dataset_name)
    if not dicts:
        raise ValueError(f"dataset {dataset_name!r} is empty")
    augmentation = build_autoaugment(cfg)
    panels = []
    for k in range(num):
        record = dicts[k % len(dicts)]
        index = k % len(augmentation.sub_policies)
        annotations = [obj for obj in record.get("annotations", []) if obj.get("iscrowd", 0) == 0]
        image = utils.read_image(record["file_name"], format=cfg.INPUT.FORMAT)
        aug_input = T.AugInput(image, boxes=non_crowd_boxes(annotations))
        transforms = augmentation.sub_policies[index](aug_input)
        keep = nonempty_boxes(aug_input.boxes)
        classes = np.array([obj["category_id"] for obj in annotations], dtype=int)
        labels = ", ".join(_entry_label(e, t) for e, t in zip(augmentation.policy[index], transforms.transforms))
        title = f"#{index}: {labels}"
        rgb = utils.convert_image_to_rgb(aug_input.image, cfg.INPUT.FORMAT)
        panels.append((rgb, aug_input.boxes[keep], classes[keep], title))
    return panels


def draw_grid(panels, class_names, output: str) -> None:
    """Draw boxes and class names on each panel with detectron2's Visualizer and save a matplotlib grid."""
    columns = math.ceil(math.sqrt(len(panels)))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 4 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for axis, (image, boxes, classes, title) in zip(axes.ravel(), panels):
        labels = [class_names[c] if c < len(class_names) else str(c) for c in classes]
        drawn = Visualizer(image).overlay_instances(boxes=boxes, labels=labels).get_image()
        axis.imshow(drawn)
        axis.set_title(title, fontsize=7)
    figure.tight_layout()
    figure.savefig(output, dpi=100)
    plt.close(figure)


def main(argv=None) -> str:
    args = parse_args(argv)
    cfg = setup_cfg(args)
    dataset_name = args.dataset or (cfg.DATASETS.TRAIN[0] if cfg.DATASETS.TRAIN else None)
    if dataset_name is None:
        raise ValueError("no dataset: pass --dataset or set DATASETS.TRAIN in the config")
    np.random.seed(args.seed)
    panels = augmented_panels(cfg, dataset_name, args.num)
    class_names = MetadataCatalog.get(dataset_name).get("thing_classes", [])
    draw_grid(panels, class_names, args.output)
    print(f"wrote {len(panels)} panels of dataset {dataset_name} to {args.output}")
    return args.output


if __name__ == "__main__":
    main(sys.argv[1:])
