"""Images per second of AutoAugmentDatasetMapper (policy v0) vs detectron2's DatasetMapper, one process.

Both mappers get the same training cfg (detectron2 defaults: BGR, ResizeShortestEdge 640..800, RandomFlip) and
the same synthetic 640x480 JPEGs with 7 boxes each (about COCO's mean). Each mapper maps every image
``--rounds`` times, alternating mappers per round; the ratio is AutoAugment time per image / default time,
from the median round of each (robust to other processes on a shared machine).

    PYTHONPATH=. python benchmarks/bench_autoaugment_mapper.py [--images 50] [--rounds 4] [--policy v0]
"""

import argparse
import os
import statistics
import tempfile
import time

import cv2
import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.structures import BoxMode

from detnas_d2.data.config import add_autoaugment_config
from detnas_d2.data.mappers import build_train_mapper

IMAGE_HEIGHT, IMAGE_WIDTH = 480, 640
BOXES_PER_IMAGE = 7


def write_images(folder: str, count: int, rng: np.random.RandomState) -> list:
    """Write ``count`` natural-looking JPEGs (smoothed noise plus shapes) and return their dataset dicts."""
    dicts = []
    for index in range(count):
        noise = rng.randint(0, 256, (IMAGE_HEIGHT // 8, IMAGE_WIDTH // 8, 3)).astype(np.uint8)
        image = cv2.resize(noise, (IMAGE_WIDTH, IMAGE_HEIGHT), interpolation=cv2.INTER_CUBIC)
        annotations = []
        for _ in range(BOXES_PER_IMAGE):
            w, h = rng.randint(20, 250), rng.randint(20, 250)
            x, y = rng.randint(0, IMAGE_WIDTH - w), rng.randint(0, IMAGE_HEIGHT - h)
            cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), tuple(int(c) for c in rng.randint(0, 256, 3)), -1)
            annotations.append(
                {"bbox": [x, y, w, h], "bbox_mode": BoxMode.XYWH_ABS, "category_id": int(rng.randint(3)), "iscrowd": 0}
            )
        path = os.path.join(folder, f"{index:04d}.jpg")
        cv2.imwrite(path, image)
        dicts.append(
            {
                "file_name": path,
                "height": IMAGE_HEIGHT,
                "width": IMAGE_WIDTH,
                "image_id": index,
                "annotations": annotations,
            }
        )
    return dicts


def build_mapper(policy: str, autoaugment: bool):
    """The training mapper from a default cfg, with or without AutoAugment."""
    cfg = get_cfg()
    add_autoaugment_config(cfg)
    cfg.INPUT.AUTOAUGMENT.ENABLED = autoaugment
    cfg.INPUT.AUTOAUGMENT.POLICY = policy
    return build_train_mapper(cfg)


def time_round(mapper, dicts: list) -> float:
    """Seconds to map every dict once."""
    start = time.perf_counter()
    for dataset_dict in dicts:
        mapper(dataset_dict)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--policy", default="v0")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    np.random.seed(0)
    mappers = {
        "DatasetMapper": build_mapper(args.policy, False),
        f"AutoAugment {args.policy}": build_mapper(args.policy, True),
    }
    with tempfile.TemporaryDirectory() as folder:
        dicts = write_images(folder, args.images, np.random.RandomState(0))
        for mapper in mappers.values():  # warm-up (file cache, lazy imports)
            time_round(mapper, dicts[:5])
        seconds = {name: [] for name in mappers}
        for _ in range(args.rounds):
            for name, mapper in mappers.items():
                seconds[name].append(time_round(mapper, dicts))
    for name, rounds in seconds.items():
        per_image = statistics.median(rounds) / args.images
        print(
            f"{name:>16s}: {1 / per_image:7.1f} images/s  "
            f"({1e3 * per_image:6.2f} ms/image, median of {args.rounds} rounds)"
        )
    default, augmented = (statistics.median(rounds) for rounds in seconds.values())
    print(f"cost ratio AutoAugment / default: {augmented / default:.2f}x (goal <= 1.5x)")


if __name__ == "__main__":
    main()
