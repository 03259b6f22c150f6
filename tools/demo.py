#!/usr/bin/env python
"""`make demo`: the whole embedded-data run on CPU, printing a COCO AP table for shapes_val.

Current stages: train a stock detectron2 Faster R-CNN (ResNet-18-FPN, from scratch) on shapes_train, then
evaluate on shapes_val. Later stages (supernet, search) are added as they land.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import train_net  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output-dir", default=os.path.join(REPO, "output", "demo"))
    parser.add_argument("--iters", type=int, default=600, help="training iterations")
    args = parser.parse_args()
    start = time.time()
    results = train_net.cli([
        "--config-file", os.path.join(REPO, "configs", "shapes", "faster_rcnn_R18_FPN.yaml"),
        "SOLVER.MAX_ITER", str(args.iters), "OUTPUT_DIR", os.path.join(args.output_dir, "faster_rcnn_R18_FPN"),
    ])
    del results
    print(f"\nmake demo finished in {(time.time() - start) / 60:.1f} min; "
          f"outputs in {args.output_dir} (the AP table above is shapes_val)")


if __name__ == "__main__":
    main()
