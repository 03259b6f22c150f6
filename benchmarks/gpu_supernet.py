"""GPU benchmark, pure PyTorch: supernet vs fixed subnet training steps, and NAS-FPN vs a plain FPN forward.

Imports only torch, ``detnas_d2.nn`` and ``detnas_d2.space`` (detnas_d2's package init skips detectron2 when it is
not installed), so it runs on a machine with only Python and torch. Reports images/s of:

1. one SGD training step of the supernet running a random path vs the fixed subnet of that path (full width):
   224 px classification (cross-entropy on the ImageNet head) and 800x1333 feature extraction (res2-res5,
   loss = sum of the feature means), each with AMP off/on and channels_last off/on;
2. the forward (inference) of NAS-FPN 7@256 vs a plain FPN (top-down, P3-P7 @ 256) on the backbone's C3-C5
   features of an 800x1333 input, with the same AMP / channels_last grid.

On CUDA, timings use CUDA events after a synchronize; AMP is float16 with a gradient scaler. On CPU, AMP is
bfloat16 autocast. ``--quick`` shrinks everything (narrowest width, tiny inputs, 2 NAS-FPN repeats @ 16 channels,
a few iterations) so a test runs it end to end in seconds on a CPU.

    PYTHONPATH=. python benchmarks/gpu_supernet.py [--device cuda] [--batch 32] [--det-batch 2] [--json out.json]
    PYTHONPATH=. python benchmarks/gpu_supernet.py --device cpu --quick
"""

import argparse
import contextlib
import itertools
import json
import random
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from detnas_d2.nn.nasfpn import NASFPN
from detnas_d2.nn.shufflenet import ShuffleNetV2Fixed, ShuffleNetV2Supernet
from detnas_d2.space.backbone import STAGE_NAMES, BackboneSearchSpace, smallest_width_mult, space_layout


class PlainFPN(nn.Module):
    """A plain FPN on C3-C5: 1x1 laterals, nearest top-down sums, 3x3 outputs; P6, P7 by max-pool (like NAS-FPN)."""

    def __init__(self, in_channels, channels: int):
        super().__init__()
        self.laterals = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.outputs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels)

    def forward(self, features):
        """``[C3, C4, C5]`` -> ``[P3, ..., P7]``."""
        laterals = [conv(x) for conv, x in zip(self.laterals, features)]
        for index in range(len(laterals) - 1, 0, -1):
            laterals[index - 1] = laterals[index - 1] + F.interpolate(
                laterals[index], size=laterals[index - 1].shape[-2:], mode="nearest"
            )
        pyramid = [conv(x) for conv, x in zip(self.outputs, laterals)]
        for _ in range(2):
            pyramid.append(F.max_pool2d(pyramid[-1], kernel_size=2, stride=2, ceil_mode=True))
        return pyramid


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--space", default="small", choices=["small", "large"])
    parser.add_argument("--batch", type=int, default=64, help="images per classification step")
    parser.add_argument("--det-batch", type=int, default=2, help="images per 800x1333 step / neck forward")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and a few iterations (CPU smoke run)")
    parser.add_argument("--json", default="", help="also write the results to this JSON file")
    return parser.parse_args(argv)


def settings(args):
    """Sizes of this run: full (224 px, 800x1333, full width, NAS-FPN 7@256) or ``--quick`` tiny ones."""
    if args.quick:
        return dict(
            width_mult=smallest_width_mult(space_layout(args.space)),
            cls_size=(32, 32),
            det_size=(64, 96),
            neck_repeats=2,
            neck_channels=16,
            batch=2,
            det_batch=1,
            warmup=1,
            iters=2,
        )
    return dict(
        width_mult=1.0,
        cls_size=(224, 224),
        det_size=(800, 1333),
        neck_repeats=7,
        neck_channels=256,
        batch=args.batch,
        det_batch=args.det_batch,
        warmup=args.warmup,
        iters=args.iters,
    )


def autocast(device: torch.device, enabled: bool):
    """AMP context: float16 on CUDA, bfloat16 on CPU; a no-op when disabled."""
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def median_seconds(fn, warmup: int, iters: int, device: torch.device) -> float:
    """Median seconds of ``fn()``: CUDA events on CUDA, perf_counter on CPU."""
    times = []
    for index in range(warmup + iters):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            elapsed = start.elapsed_time(end) / 1e3
        else:
            begin = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - begin
        if index >= warmup:
            times.append(elapsed)
    return statistics.median(times)


def prepare(module: nn.Module, x: torch.Tensor, channels_last: bool):
    """``module`` and ``x`` in channels_last memory format if asked."""
    if channels_last:
        return module.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    return module, x


def train_step_fn(model, x, arch, task: str, device, amp: bool):
    """One SGD step (forward, loss, backward, update) of ``model``; ``arch`` is given to supernets only."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5)
    scaler = torch.cuda.amp.GradScaler(enabled=amp and device.type == "cuda")
    labels = torch.randint(0, 1000, (x.shape[0],), device=device)

    def step():
        with autocast(device, amp):
            out = model(x, arch) if arch is not None else model(x)
            if task == "cls":
                loss = F.cross_entropy(out["linear"].float(), labels)
            else:
                loss = sum(out[name].float().mean() for name in STAGE_NAMES)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def bench_training(args, conf, device, arch):
    """images/s of supernet vs fixed subnet training steps for both tasks and the AMP x channels_last grid."""
    rows = []
    tasks = (("cls", conf["cls_size"], conf["batch"], 1000), ("det", conf["det_size"], conf["det_batch"], None))
    for task, size, batch, classes in tasks:
        outputs = None if classes else STAGE_NAMES
        nets = {
            "supernet": ShuffleNetV2Supernet(args.space, conf["width_mult"], num_classes=classes, out_features=outputs),
            "fixed": ShuffleNetV2Fixed(arch, args.space, conf["width_mult"], num_classes=classes, out_features=outputs),
        }
        for amp, channels_last in itertools.product((False, True), repeat=2):
            row = dict(
                bench=f"train-{task}", input=f"{batch}x3x{size[0]}x{size[1]}", amp=amp, channels_last=channels_last
            )
            for name, net in nets.items():
                model, x = prepare(net.to(device).train(), torch.randn(batch, 3, *size, device=device), channels_last)
                step = train_step_fn(model, x, arch if name == "supernet" else None, task, device, amp)
                row[name] = batch / median_seconds(step, conf["warmup"], conf["iters"], device)
            row["ratio"] = row["supernet"] / row["fixed"]
            rows.append(row)
    return rows


def bench_necks(args, conf, device, arch):
    """images/s of the NAS-FPN and plain-FPN forwards on C3-C5 features of the detection input."""
    backbone = ShuffleNetV2Fixed(arch, args.space, conf["width_mult"], out_features=STAGE_NAMES).to(device).eval()
    batch, (height, width) = conf["det_batch"], conf["det_size"]
    with torch.no_grad():
        feats = backbone(torch.randn(batch, 3, height, width, device=device))
    c3_c5 = [feats[name] for name in STAGE_NAMES[1:]]
    in_channels = [x.shape[1] for x in c3_c5]
    channels = conf["neck_channels"]
    necks = {
        "nasfpn": NASFPN(in_channels, "NAS-FPN", channels, conf["neck_repeats"]),
        "fpn": PlainFPN(in_channels, channels),
    }
    rows = []
    for amp, channels_last in itertools.product((False, True), repeat=2):
        row = dict(
            bench=f"neck-forward {conf['neck_repeats']}@{channels}",
            input=f"{batch}x3x{height}x{width}",
            amp=amp,
            channels_last=channels_last,
        )
        for name, neck in necks.items():
            neck = neck.to(device).eval()
            if channels_last:
                neck = neck.to(memory_format=torch.channels_last)
            inputs = [x.contiguous(memory_format=torch.channels_last) if channels_last else x for x in c3_c5]

            def forward(neck=neck, inputs=inputs, amp=amp):
                with torch.no_grad(), autocast(device, amp):
                    neck(inputs)

            row[name] = batch / median_seconds(forward, conf["warmup"], conf["iters"], device)
        row["ratio"] = row["nasfpn"] / row["fpn"]
        rows.append(row)
    return rows


def print_rows(rows, first: str, second: str):
    """A table of images/s: ``first`` vs ``second`` per row."""
    print(
        f"{'benchmark':<22} {'input':<16} {'amp':<5} {'ch_last':<7} {first + ' img/s':>15} {second + ' img/s':>13} "
        f"{'ratio':>6}"
    )
    for row in rows:
        print(
            f"{row['bench']:<22} {row['input']:<16} {str(row['amp']):<5} {str(row['channels_last']):<7} "
            f"{row[first]:15.2f} {row[second]:13.2f} {row['ratio']:6.3f}"
        )


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    conf = settings(args)
    torch.manual_seed(args.seed)
    arch = BackboneSearchSpace(args.space).sample(random.Random(args.seed))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device={device} ({name}) torch={torch.__version__} space={args.space} width={conf['width_mult']} "
        f"path={''.join(map(str, arch))} warmup={conf['warmup']} iters={conf['iters']} quick={args.quick}"
    )
    training = bench_training(args, conf, device, arch)
    print_rows(training, "supernet", "fixed")
    necks = bench_necks(args, conf, device, arch)
    print_rows(necks, "nasfpn", "fpn")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"device": name, "settings": conf, "arch": list(arch), "training": training, "necks": necks},
                f,
                indent=1,
            )
    return training, necks


if __name__ == "__main__":
    main()
