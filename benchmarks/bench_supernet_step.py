"""Time per training step: the supernet running path ``a`` vs the fixed network of ``a``.

Same input, same run, several random paths; a step is forward + cross-entropy + backward + SGD (momentum,
weight decay) on a classification head. Timings alternate supernet and fixed network per round so machine
load affects both alike. Pure PyTorch: runs where detectron2 is not installed (e.g. a GPU box).

    PYTHONPATH=. python benchmarks/bench_supernet_step.py [--device cuda] [--batch 64] [--size 224]
"""

import argparse
import random
import statistics
import time

import torch

from detnas_d2.nn.shufflenet import ShuffleNetV2Fixed, ShuffleNetV2Supernet
from detnas_d2.space.backbone import BackboneSearchSpace


def time_steps(model, arch, images, labels, steps, device):
    """Median seconds of one SGD step of ``model`` (``arch`` given to supernets only)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5)
    times = []
    for _ in range(steps + 2):  # two warm-up steps
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = model(images, arch) if arch is not None else model(images)
        loss = torch.nn.functional.cross_entropy(out["linear"], labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--space", default="small", choices=["small", "large"])
    parser.add_argument("--width-mult", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--paths", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads (1 keeps a loaded machine's timings stable)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    space = BackboneSearchSpace(args.space)
    images = torch.randn(args.batch, 3, args.size, args.size, device=device)
    labels = torch.randint(0, 1000, (args.batch,), device=device)
    supernet = ShuffleNetV2Supernet(space=args.space, width_mult=args.width_mult, num_classes=1000).to(device)
    print(f"device={device} space={args.space} width={args.width_mult} batch={args.batch} size={args.size}")
    print(f"{'path':<28} {'supernet ms':>12} {'fixed ms':>10} {'ratio':>7}")
    ratios = []
    for _ in range(args.paths):
        arch = space.sample(rng)
        fixed = ShuffleNetV2Fixed(arch, space=args.space, width_mult=args.width_mult, num_classes=1000).to(device)
        t_super = time_steps(supernet, arch, images, labels, args.steps, device)
        t_fixed = time_steps(fixed, None, images, labels, args.steps, device)
        ratios.append(t_super / t_fixed)
        print(f"{''.join(map(str, arch)):<28} {t_super * 1e3:12.1f} {t_fixed * 1e3:10.1f} {ratios[-1]:7.3f}")
    print(f"median supernet/fixed step-time ratio: {statistics.median(ratios):.3f} (goal <= 1.05)")


if __name__ == "__main__":
    main()
