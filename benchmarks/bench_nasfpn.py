"""Forward time and FLOPs of the NAS-FPN neck (published block, 7 @ 256) vs detectron2's RetinaNet FPN (P3-P7).

Both necks run on the same ResNet-50-shaped C3..C5 features of a 640x640 image (512x80x80, 1024x40x40, 2048x20x20)
and are built from config through NECK_REGISTRY. FLOPs are fvcore's count (one multiply-add = one flop).

    PYTHONPATH=. python benchmarks/bench_nasfpn.py [--device cuda] [--iters 20] [--batch 1]
"""

import argparse
import statistics
import time

import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from fvcore.nn import FlopCountAnalysis

from detnas_d2.modeling.config import add_nasfpn_config
from detnas_d2.modeling.neck import build_neck

#: ResNet-50 res3..res5 channels and strides
RESNET50_FEATURES = {"res3": (512, 8), "res4": (1024, 16), "res5": (2048, 32)}


def build_necks(device: str):
    """The two necks under comparison, in eval mode on ``device``."""
    input_shape = {name: ShapeSpec(channels=c, stride=s) for name, (c, s) in RESNET50_FEATURES.items()}
    necks = {}
    for name in ("NASFPN", "FPN"):
        cfg = get_cfg()
        add_nasfpn_config(cfg)
        cfg.MODEL.NECK.NAME = name
        cfg.MODEL.NASFPN.NUM_REPEATS, cfg.MODEL.NASFPN.CHANNELS, cfg.MODEL.NASFPN.ARCH = 7, 256, "NAS-FPN"
        cfg.MODEL.FPN.OUT_CHANNELS = 256
        necks[name] = build_neck(cfg, input_shape).to(device).eval()
    return necks


def make_features(batch: int, size: int, device: str):
    """Random C3..C5 maps shaped like ResNet-50's for a ``size`` x ``size`` input."""
    return {
        name: torch.randn(batch, channels, size // stride, size // stride, device=device)
        for name, (channels, stride) in RESNET50_FEATURES.items()
    }


def time_forwards(necks, features, iters: int, warmup: int, device: str):
    """Median forward time (ms) per neck; the necks alternate each round so machine load hits both alike."""
    times = {name: [] for name in necks}
    with torch.no_grad():
        for step in range(warmup + iters):
            for name, neck in necks.items():
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                start = time.perf_counter()
                neck(features)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                if step >= warmup:
                    times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def count_flops(neck, features):
    """fvcore FLOP count (multiply-adds) total and per operator."""
    analysis = FlopCountAnalysis(neck, (features,))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return analysis.total(), analysis.by_operator()


def main():
    """Parse options, time both necks, count their FLOPs and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    necks = build_necks(args.device)
    features = make_features(args.batch, args.size, args.device)
    if args.device.startswith("cuda"):
        device_name = torch.cuda.get_device_name()
    else:
        device_name = f"cpu ({torch.get_num_threads()} threads)"
    print(
        f"device {device_name}, input {args.size}x{args.size}, batch {args.batch}, "
        f"median of {args.iters} interleaved forwards after {args.warmup} warm-up"
    )
    milliseconds_of = time_forwards(necks, features, args.iters, args.warmup, args.device)
    results = {}
    for name, neck in necks.items():
        milliseconds = milliseconds_of[name]
        flops, by_operator = count_flops(neck, make_features(1, args.size, args.device))
        params = sum(p.numel() for p in neck.parameters())
        results[name] = (milliseconds, flops)
        operators = ", ".join(f"{op} {count / 1e9:.2f}" for op, count in sorted(by_operator.items()))
        print(
            f"{name:7s} {milliseconds:9.2f} ms  {flops / 1e9:7.2f} GFLOPs (MACs, batch 1)  "
            f"{params / 1e6:6.2f} M params  [{operators}]"
        )
    (nas_ms, nas_flops), (fpn_ms, fpn_flops) = results["NASFPN"], results["FPN"]
    print(f"NAS-FPN / FPN: time x{nas_ms / fpn_ms:.2f}, FLOPs x{nas_flops / fpn_flops:.2f}")


if __name__ == "__main__":
    main()
