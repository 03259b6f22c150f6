"""Evolution vs random search at the same budget over several search seeds, each winner scored by the ground
truth's stand-alone schedule and seeds (read from ``shapes_det.json`` when the winner is a row, else trained)
into ``search_vs_random.json``. Resumable: finished searches and trainings are kept.

    python benchmarks/ground_truth/search_vs_random.py --supernet output/gt_supernet/finetune/model_final.pth \
        [--search-seeds 0 1 2 3 4] [--methods evolution random] [KEY VALUE ...]

The searches run ``configs/shapes/search_fpn.yaml`` (24 candidates, backbone FLOPs <= 300M) with
``SEARCH.SEED`` = the search seed and ``SEARCH.STRATEGY`` = the method; trailing overrides apply to all.
"""

import argparse
import json
import os
import subprocess
import sys

from benchmark import HERE, ROOT, SEEDS, WORK_DIR, read_table, row_of, run_env, train

OUT = os.path.join(HERE, "search_vs_random.json")


def search(method: str, seed: int, supernet: str, config: str, opts) -> dict:
    """The winner of one search (run, or resumed, into its own folder): its ``arch`` and one-shot ``fitness``."""
    out = os.path.join(WORK_DIR, "searches", method, f"seed{seed}")
    if not os.path.isfile(os.path.join(out, "best_weights.pth")):  # written last, when the search has ended
        cmd = [
            sys.executable,
            "-m",
            "detnas_d2.cli.search",
            "--config-file",
            config,
            "MODEL.WEIGHTS",
            supernet,
            "SEARCH.STRATEGY",
            method,
            "SEARCH.SEED",
            str(seed),
            *opts,
            "OUTPUT_DIR",
            out,
        ]
        if os.path.isdir(out):
            cmd.append("--resume")
        subprocess.run(cmd, check=True, cwd=ROOT, env=run_env())
    with open(os.path.join(out, "best_arch.json")) as f:
        return json.load(f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--supernet", required=True)
    parser.add_argument("--config", default="configs/shapes/search_fpn.yaml")
    parser.add_argument("--search-seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    parser.add_argument("--methods", nargs="*", default=["evolution", "random"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each stand-alone training")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args()

    from detnas_d2.utils.io import atomic_write

    results = {m: [] for m in args.methods}
    if os.path.isfile(OUT):
        with open(OUT) as f:
            results.update(json.load(f))
    for seed in args.search_seeds:
        for method in args.methods:
            best = search(method, seed, args.supernet, args.config, args.opts)
            arch = list(best["arch"])
            row = row_of(read_table(), arch)
            ap = dict(row["ap"]) if row else {}
            for s in SEEDS:
                if str(s) not in ap:
                    ap[str(s)] = train(arch, s, threads=args.threads)
            entry = {"seed": seed, "arch": arch, "fitness": best["fitness"], "ap": ap, "in_table": row is not None}
            results[method] = [e for e in results[method] if e["seed"] != seed] + [entry]
            atomic_write(OUT, json.dumps(results, indent=1) + "\n")
            print(f"[search vs random] {method} seed {seed}: {arch} AP {ap}", flush=True)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
