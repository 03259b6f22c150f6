"""Latency of random fixed backbone paths in eager PyTorch, TorchScript (traced, frozen) and onnxruntime (CPU), and
the error of the eager per-block lookup table (BlockLatencyTable) against each: does the table rank candidates
for the runtime they are deployed on? About 2 minutes with the defaults on 2 CPU cores.

    PYTHONPATH=. python benchmarks/bench_export_latency.py [--width-mult 0.5] [--size 224 224] [--paths 10]
        [--runs 11] [--clock wall|cpu] [--threads 1]
"""

import argparse
import random

import torch

from detnas_d2.cost.latency import CLOCKS, BlockLatencyTable, LatencyMeasurer, relative_errors
from detnas_d2.cost.runtime_latency import OnnxRuntimeLatencyMeasurer, TorchScriptLatencyMeasurer
from detnas_d2.space.backbone import BackboneSearchSpace, format_architecture, space_layout

RUNTIMES = {
    "eager": LatencyMeasurer,
    "torchscript": TorchScriptLatencyMeasurer,
    "onnxruntime": OnnxRuntimeLatencyMeasurer,
}


def parse_args():
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="small", choices=["small", "large"])
    parser.add_argument("--width-mult", type=float, default=0.5)
    parser.add_argument("--size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"))
    parser.add_argument("--paths", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--clock", default="wall", choices=list(CLOCKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of torch and onnxruntime")
    return parser.parse_args()


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    layout = space_layout(args.space).scaled(args.width_mult)
    options = dict(input_size=args.size, warmup=args.warmup, runs=args.runs, clock=args.clock)
    measurers = {name: cls(args.space, layout, device="cpu", **options) for name, cls in RUNTIMES.items()}
    table = BlockLatencyTable.measure(measurers["eager"])
    rng = random.Random(args.seed)
    archs = [BackboneSearchSpace(args.space).sample(rng) for _ in range(args.paths)]
    measured = {name: [] for name in RUNTIMES}
    print(
        f"{args.space} space, width {args.width_mult}, {args.size[0]}x{args.size[1]}, {args.threads} thread(s), "
        f"{args.clock} clock, median of {args.runs} runs (ms)"
    )
    print(f"{'path':<28} {'eager':>8} {'torchscript':>12} {'onnxruntime':>12} {'table':>8}")
    for arch in archs:
        for name, measurer in measurers.items():
            measured[name].append(measurer.measure(arch))
        row = " ".join(f"{measured[name][-1]:>{width}.2f}" for name, width in zip(RUNTIMES, (8, 12, 12)))
        print(f"{format_architecture(arch):<28} {row} {table(arch):>8.2f}")
    predicted = [table(arch) for arch in archs]
    print("\ntable (eager, in context) vs measured: mean / max relative error")
    for name in RUNTIMES:
        mean, worst = relative_errors(predicted, measured[name])
        print(f"  {name:<12} {100 * mean:6.1f} % / {100 * worst:6.1f} %")
    for name in ("torchscript", "onnxruntime"):
        ratio = sum(measured[name]) / sum(measured["eager"])
        print(f"  {name} / eager total time: x{ratio:.2f}")


if __name__ == "__main__":
    main()
