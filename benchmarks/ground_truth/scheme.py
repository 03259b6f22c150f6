"""Train a supernet with one training scheme and score every ground-truth architecture with it.

    python benchmarks/ground_truth/scheme.py --name kernel                      # the embedded default
    python benchmarks/ground_truth/scheme.py --name none --all MODEL.DETNAS.WEIGHT_SHARING none
    python benchmarks/ground_truth/scheme.py --name fair --finetune SUPERNET.SAMPLER fair
    python benchmarks/ground_truth/scheme.py --name ft600 --finetune SOLVER.MAX_ITER 600 SOLVER.STEPS "(500,)"

Runs the pretrain and finetune stages of ``configs/shapes/pipeline.yaml`` (with ``--pretrain`` / ``--finetune`` /
``--all`` overrides added to their ``opts``) into ``output/ground_truth/schemes/<name>`` through the resumable
pipeline, then writes ``supernet_scores_<name>.json`` beside the table (``score_supernet.py``, the search's own
fitness with ``--search`` overrides). ``analyze.py --scores supernet_scores_<name>.json`` ranks it.
"""

import argparse
import os
import subprocess
import sys

import yaml
from benchmark import HERE, ROOT, WORK_DIR, run_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True)
    for stage in ("pretrain", "finetune", "search", "all"):
        parser.add_argument(f"--{stage}", nargs="*", default=[], metavar="KEY VALUE")
    args = parser.parse_args()

    base = os.path.join(ROOT, "configs", "shapes", "pipeline.yaml")
    with open(base) as f:
        spec = yaml.safe_load(f)
    stages = {name: dict(spec["stages"][name]) for name in ("pretrain", "finetune")}
    for name, stage in stages.items():
        stage["config"] = os.path.join(os.path.dirname(base), stage["config"])
        stage["opts"] = [str(x) for x in stage.get("opts", [])] + args.all + getattr(args, name)
    out = os.path.join(WORK_DIR, "schemes", args.name)
    os.makedirs(out, exist_ok=True)
    pipeline = os.path.join(out, "pipeline.yaml")
    with open(pipeline, "w") as f:
        yaml.safe_dump({"output_dir": out, "stages": stages}, f)
    run = lambda cmd: subprocess.run([sys.executable, *cmd], check=True, cwd=ROOT, env=run_env())  # noqa: E731
    run(["-m", "detnas_d2.pipeline", "--config-file", pipeline])
    scores = os.path.join(HERE, f"supernet_scores_{args.name}.json")
    note = (
        f"pretrain/finetune stages of configs/shapes/pipeline.yaml plus {args.all} / {args.pretrain} / {args.finetune}"
    )
    run(
        [
            os.path.join(HERE, "score_supernet.py"),
            "--supernet",
            os.path.join(out, "finetune", "model_final.pth"),
            "--name",
            args.name,
            "--out",
            scores,
            "--note",
            note,
            *args.all,
            *args.search,
        ]
    )


if __name__ == "__main__":
    main()
