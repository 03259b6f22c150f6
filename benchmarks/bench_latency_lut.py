"""Error of the per-block latency lookup table against measured fixed-subnet latency, over random paths.

Builds the table (each position x choice timed inside full forwards, or alone with ``--method isolated``), then
measures the fixed subnet of ``--paths`` random paths and prints the mean and max relative error of the table's
prediction; ``--repeat`` re-measures every path to show how much two measurements of the same path differ on
this machine. Pure PyTorch.

    PYTHONPATH=. python benchmarks/bench_latency_lut.py [--device cpu] [--width-mult 0.5] [--size 224 224] [--paths 20]
        [--method in_context|isolated] [--stat median|min]
        [--clock wall|cpu] [--repeat] [--plot FILE]
"""

import argparse
import random

import torch

from detnas_d2.cost.latency import (
    CLOCKS,
    STATISTICS,
    TABLE_METHODS,
    BlockLatencyTable,
    LatencyMeasurer,
    device_key,
    relative_errors,
)
from detnas_d2.space.backbone import BackboneSearchSpace, format_architecture, space_layout


def parse_args():
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--space", default="small", choices=["small", "large"])
    parser.add_argument("--width-mult", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"))
    parser.add_argument("--paths", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--method", default="in_context", choices=list(TABLE_METHODS))
    parser.add_argument(
        "--stat",
        default="median",
        choices=list(STATISTICS),
        help="reduction of the timed runs; 'min' resists preemption on a loaded CPU",
    )
    parser.add_argument(
        "--clock",
        default="wall",
        choices=list(CLOCKS),
        help="'cpu' = process CPU time: leaves out waiting for a core on a shared CPU",
    )
    parser.add_argument("--repeat", action="store_true", help="re-measure every path to show the timing noise floor")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1 keeps timings stable)")
    parser.add_argument("--plot", help="write predicted (and, with --repeat, re-measured) vs measured to this PNG")
    return parser.parse_args()


def plot(measured, predicted, again, title, path):
    """Scatter of the table's prediction (and a second measurement) against the measurement, with y = x."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.scatter(measured, predicted, label="lookup table prediction", s=18)
    if again:
        axes.scatter(measured, again, label="second measurement", s=18, marker="x")
    values = measured + predicted + (again or [])
    low, high = min(values) * 0.95, max(values) * 1.05
    axes.plot([low, high], [low, high], color="grey", linestyle=":", label="y = x")
    axes.set_xlim(low, high)
    axes.set_ylim(low, high)
    axes.set_xlabel("measured fixed subnet latency (ms)")
    axes.set_ylabel("predicted / re-measured latency (ms)")
    axes.set_title(title, fontsize=9)
    axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    layout = space_layout(args.space).scaled(args.width_mult)
    measurer = LatencyMeasurer(
        args.space,
        layout,
        device=args.device,
        batch_size=args.batch,
        input_size=args.size,
        warmup=args.warmup,
        runs=args.runs,
        statistic=args.stat,
        clock=args.clock,
    )
    table = BlockLatencyTable.measure(measurer, args.method)
    print(
        f"device={device_key(measurer.device)} space={args.space} width={args.width_mult} "
        f"input={args.batch}x3x{args.size[0]}x{args.size[1]} warmup={args.warmup} runs={args.runs} "
        f"stat={args.stat} clock={args.clock}"
    )
    print(
        f"table ({args.method}): stem + {len(table.blocks)} positions x 4 choices, "
        f"{measurer.num_measured} timed networks/modules"
    )
    rng = random.Random(args.seed)
    space = BackboneSearchSpace(args.space)
    predicted, measured = [], []
    print(f"{'path':<44} {'measured ms':>12} {'LUT ms':>9} {'rel err':>8}")
    archs = [space.sample(rng) for _ in range(args.paths)]
    for arch in archs:
        measured.append(measurer.measure(arch))
        predicted.append(table(arch))
        error = abs(predicted[-1] - measured[-1]) / measured[-1]
        print(f"{format_architecture(arch):<44} {measured[-1]:12.2f} {predicted[-1]:9.2f} {error:8.3f}")
    mean_error, max_error = relative_errors(predicted, measured)
    print(f"LUT relative error over {args.paths} random paths: mean {mean_error:.3f}, max {max_error:.3f}")
    title = f"{args.paths} paths: LUT error mean {100 * mean_error:.1f} %, max {100 * max_error:.1f} %"
    again = None
    if args.repeat:
        again = [measurer.measure(arch) for arch in archs]
        mean_error, max_error = relative_errors(again, measured)
        print(f"noise floor, same paths re-measured: mean {mean_error:.3f}, max {max_error:.3f} relative difference")
        title += f"\nre-measured: mean {100 * mean_error:.1f} %, max {100 * max_error:.1f} %"
    if args.plot:
        plot(measured, predicted, again, f"{device_key(measurer.device)}, {title}", args.plot)
        print(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
