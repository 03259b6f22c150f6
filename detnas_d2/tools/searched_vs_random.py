"""Does the evolutionary search find better detectors than random search on the same budget?

    python -m detnas_d2.tools.searched_vs_random --config-file configs/shapes/pipeline.yaml

Run after the pipeline (``make demo``). It reuses that run's pretrained and fine-tuned supernets, runs the same
search with ``SEARCH.STRATEGY random`` (the same number of candidates under the same FLOPs limit, the best by
the same one-shot fitness), retrains and evaluates its winner exactly as the pipeline retrained the searched one,
and writes ``searched_vs_random.md`` / ``.json`` beside the pipeline's report: both architectures, their
one-shot fitness, FLOPs and final AP. Everything lives in ``<output_dir>/random_baseline`` and is resumable.
"""

import argparse
import copy
import json
import os

from ..pipeline import Pipeline, load_pipeline
from ..utils.io import atomic_write

SHARED_STAGES = ("pretrain", "finetune")


def random_baseline(spec: dict, output_dir: str, launch_args) -> Pipeline:
    """A pipeline in ``output_dir/random_baseline`` sharing the supernet stages, with a random-strategy search."""
    spec = copy.deepcopy(spec)
    spec["stages"].pop("reference", None)
    spec["stages"]["search"]["opts"] = list(spec["stages"]["search"]["opts"]) + ["SEARCH.STRATEGY", "random"]
    baseline = Pipeline(spec, os.path.join(output_dir, "random_baseline"), launch_args)
    os.makedirs(baseline.output_dir, exist_ok=True)
    for name in SHARED_STAGES:
        if name in spec["stages"] and not os.path.exists(baseline.stage_dir(name)):
            os.symlink(os.path.join(os.path.abspath(output_dir), name), baseline.stage_dir(name))
    return baseline


def _row(pipeline: Pipeline) -> dict:
    best = pipeline.summary["search"]
    final = pipeline.summary["evaluate"]["results"]["bbox"]
    return {
        "arch": best["best_arch"],
        "one_shot_fitness": best["best_fitness"],
        "costs": best["best_costs"],
        "final_AP": final["AP"],
        "final_AP50": final.get("AP50"),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="the pipeline YAML the searched run used")
    parser.add_argument("--output-dir", default=None, help="that run's output folder (default: the file's)")
    parser.add_argument("--num-gpus", type=int, default=1)
    args = parser.parse_args(argv)
    spec = load_pipeline(args.config_file)
    output_dir = args.output_dir or spec["output_dir"]
    launch_args = ["--num-gpus", str(args.num_gpus), "--dist-url", "auto"]
    searched = Pipeline(spec, output_dir, launch_args)
    for stage in ("search", "evaluate"):
        if not os.path.isdir(searched.stage_dir(stage)):
            raise SystemExit(f"error: {searched.stage_dir(stage)} is missing: run the pipeline first")
    searched.run()  # every stage is done: this only collects the numbers
    baseline = random_baseline(spec, output_dir, launch_args)
    baseline.run()
    rows = {"evolution (searched)": _row(searched), "random search, same budget": _row(baseline)}
    lines = [
        "| search | one-shot fitness (search split) | backbone FLOPs | final AP (val) | AP50 | architecture |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['one_shot_fitness']:.2f} | {r['costs'].get('flops', 0) / 1e6:.1f}M | "
            f"{r['final_AP']:.2f} | {r['final_AP50']:.2f} | `{r['arch']}` |"
        )
    atomic_write(os.path.join(output_dir, "searched_vs_random.json"), json.dumps(rows, indent=1))
    atomic_write(os.path.join(output_dir, "searched_vs_random.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
