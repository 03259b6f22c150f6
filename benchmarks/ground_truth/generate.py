"""Train the shapes detection ground truth into ``benchmarks/ground_truth/shapes_det.json`` (resumable).

Every architecture of :func:`benchmark.architectures` is trained stand-alone from scratch with the fixed
:data:`benchmark.SCHEDULE` once per seed of :data:`benchmark.SEEDS`, and its bbox AP on ``shapes_val`` lands in
the table as soon as that run ends. Finished runs are kept; a killed generator continues where it stopped (a
killed training resumes from its last checkpoint). About 10 minutes a run on one core, 72 runs: two shards on
a 2-core machine take about 6 hours.

    python benchmarks/ground_truth/generate.py --shard 0/2 &   # two single-thread jobs on 2 cores
    python benchmarks/ground_truth/generate.py --shard 1/2 &
    python benchmarks/ground_truth/generate.py --rows 7 --redo # regenerate one row (all its seeds)
    python benchmarks/ground_truth/generate.py --list          # the architectures, FLOPs and what is done
"""

import argparse
import os
import shutil
import time

from benchmark import (
    SCHEDULE,
    SEEDS,
    TABLE,
    arch_string,
    architectures,
    flops,
    locked_table,
    read_table,
    run_dir,
    train,
)


def parse_shard(text: str):
    index, count = (int(x) for x in text.split("/"))
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"--shard wants I/N with 0 <= I < N, got {text!r}")
    return index, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shard", type=parse_shard, default=(0, 1), help="I/N: train every N-th run from the I-th")
    parser.add_argument("--rows", type=int, nargs="*", help="only these rows (indices of --list)")
    parser.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS))
    parser.add_argument("--redo", action="store_true", help="retrain the selected rows' runs from scratch")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each training run")
    parser.add_argument("--list", action="store_true", help="print the architectures and the table's state")
    args = parser.parse_args()

    archs = architectures()
    table = read_table()
    if table["schedule"] != SCHEDULE:
        raise SystemExit(
            f"{TABLE} was made with the schedule {table['schedule']}, not {SCHEDULE}: move it away to start over"
        )
    if args.list:
        for i, spec in enumerate(archs):
            row = next((r for r in table["rows"] if r["arch"] == spec["arch"]), {"ap": {}})
            aps = " ".join(f"{row['ap'].get(str(s), float('nan')):6.2f}" for s in SEEDS)
            print(f"{i:2d} {spec['group']:9s} {arch_string(spec['arch'])} {flops(spec['arch']) / 1e6:6.1f}M  {aps}")
        return
    rows = range(len(archs)) if args.rows is None else args.rows
    jobs = [(i, s) for i in rows for s in args.seeds]
    jobs = jobs[args.shard[0] :: args.shard[1]]
    if args.redo:
        with locked_table() as table:
            for i, seed in jobs:
                shutil.rmtree(run_dir(archs[i]["arch"], seed), ignore_errors=True)
                for row in table["rows"]:
                    if row["arch"] == archs[i]["arch"]:
                        row["ap"].pop(str(seed), None)
    trained, seconds = 0, 0.0
    for n, (i, seed) in enumerate(jobs):
        arch = archs[i]["arch"]
        start = time.time()
        fresh = not os.path.isfile(os.path.join(run_dir(arch, seed), "ap.json"))
        ap = train(arch, seed, threads=args.threads)
        if fresh:
            trained, seconds = trained + 1, seconds + time.time() - start
        with locked_table() as table:
            row = next((r for r in table["rows"] if r["arch"] == arch), None)
            if row is None:
                row = {"arch": arch, "flops": flops(arch), "group": archs[i]["group"], "ap": {}}
                table["rows"].append(row)
            row["ap"][str(seed)] = ap
            table["rows"].sort(key=lambda r: [a["arch"] for a in archs].index(r["arch"]))
        left = len(jobs) - n - 1
        eta = f", ETA {seconds / trained * left / 60:.0f} min" if trained and left else ""
        print(f"[ground truth] row {i} seed {seed}: AP {ap:.2f} ({n + 1}/{len(jobs)}{eta})", flush=True)


if __name__ == "__main__":
    os.chdir(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    main()
