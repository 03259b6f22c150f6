"""The shapes detection ground truth: which architectures, how each is trained, and the table file.

Shared by ``generate.py`` (trains the rows), ``score_supernet.py`` and ``search_vs_random.py`` (train a search
winner that is not in the table with the same schedule and seeds) and ``analyze.py`` (reads the table).
"""

import fcntl
import json
import os
import random
import re
import subprocess
import sys
from contextlib import contextmanager
from typing import Dict, Iterator, List, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TABLE = os.path.join(HERE, "shapes_det.json")
#: the stand-alone runs' folders (checkpoints are deleted once a run's AP is in the table)
WORK_DIR = os.path.join(ROOT, "output", "ground_truth")
TRAIN_CONFIG = "configs/shapes/supernet_fpn.yaml"
SPACE = "small"
SEEDS = (0, 1, 2)
#: one fixed schedule for every row: the shapes Faster R-CNN FPN of TRAIN_CONFIG from scratch (no supernet, no
#: pretraining), one torch thread; the row's AP is bbox AP on shapes_val after the last iteration (the evaluations
#: at 200 and 400 iterations stay in each run's metrics.json as a learning curve). The 200-iteration warm-up
#: (config: 50) was measured on all-k3 paths, seeds 0 and 1: 31.6 / 27.4 AP, against 25.9 / 14.7 with 50
#: (README "Ground truth")
SCHEDULE = {
    "MODEL.WEIGHTS": "",
    "SOLVER.MAX_ITER": 600,
    "SOLVER.STEPS": "(500,)",
    "SOLVER.WARMUP_ITERS": 200,
    "TEST.EVAL_PERIOD": 200,
}
#: how often a run saves its state for a resume (does not change its result)
CHECKPOINT_OPTS = ["SOLVER.CHECKPOINT_PERIOD", "200"]
#: architectures per group (see :func:`architectures`); 24 in all
NUM_SPREAD, NUM_BAND, BAND_WIDTH = 13, 6, 0.015  # band: +-1.5 %, a 3 % wide window


def flops(arch: Sequence[int]) -> float:
    from detnas_d2.cost import backbone_flops

    return float(backbone_flops(list(arch), space=SPACE, width_mult=1.0))


def arch_string(arch: Sequence[int]) -> str:
    """The compact, dash-separated form ("0000-0000-00000000-0000"; YAML would read bare digits as an int)."""
    digits = "".join(map(str, arch))
    return "-".join((digits[:4], digits[4:8], digits[8:16], digits[16:]))


def architectures(seed: int = 0) -> List[Dict]:
    """The 24 benchmark architectures, in the order they are trained (most informative first).

    - the four uniform paths (all k3, k5, k7, Xception-like): both ends of the FLOPs range and each block type;
    - the published COCO-FPN-300M;
    - ``NUM_SPREAD`` paths at evenly spaced FLOPs quantiles of a pool that mixes uniform paths with paths biased
      towards cheap or expensive blocks (so the whole range is covered, not only the centre of uniform sampling);
    - ``NUM_BAND`` distinct uniform paths within +-1.5 % of the median FLOPs of uniform paths (where FLOPs alone
      cannot rank).
    """
    from detnas_d2.space.backbone import parse_architecture

    rng = random.Random(seed)
    rows = [{"arch": [c] * 20, "group": "uniform"} for c in (0, 3, 1, 2)]
    rows.append({"arch": list(parse_architecture("COCO-FPN-300M", space=SPACE).encoding), "group": "published"})
    uniform = [[rng.randrange(4) for _ in range(20)] for _ in range(1000)]
    biased = [[rng.choice(bias) for _ in range(20)] for bias in ((0, 0, 1, 3), (3, 3, 2, 0)) for _ in range(300)]
    pool = sorted(uniform + biased, key=flops)
    spread = [pool[round((i + 1) * (len(pool) - 1) / (NUM_SPREAD + 1))] for i in range(NUM_SPREAD)]
    median = flops(sorted(uniform, key=flops)[len(uniform) // 2])
    band = [a for a in uniform if abs(flops(a) - median) <= BAND_WIDTH * median]
    rng.shuffle(band)
    taken = [r["arch"] for r in rows] + spread
    band = [a for i, a in enumerate(band) if a not in taken and a not in band[:i]][:NUM_BAND]
    # interleave so that a partial table already covers the FLOPs range and the band
    rest = []
    for i in range(NUM_SPREAD):
        rest.append({"arch": spread[i], "group": "spread"})
        if i < len(band):
            rest.append({"arch": band[i], "group": "band"})
    return rows + rest


@contextmanager
def locked_table(path: str = TABLE) -> Iterator[Dict]:
    """The table, read under an exclusive lock (two generator shards may finish runs at once); written back
    atomically when the block exits without an error."""
    from detnas_d2.utils.io import atomic_write

    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        table = read_table(path)
        yield table
        atomic_write(path, dump_json(table))


def dump_json(data) -> str:
    """Indented JSON with each list of numbers (an architecture) on one line."""
    text = json.dumps(data, indent=1)
    return (
        re.sub(
            r"\[\n\s+(-?[\d.]+(?:,\n\s+-?[\d.]+)*)\n\s+\]",
            lambda m: "[" + re.sub(r",\n\s+", ", ", m.group(1)) + "]",
            text,
        )
        + "\n"
    )


def read_table(path: str = TABLE) -> Dict:
    """The table file, or an empty table of this schedule when there is none yet."""
    if not os.path.isfile(path):
        return {"schedule": dict(SCHEDULE), "train_config": TRAIN_CONFIG, "commit": git_commit(), "rows": []}
    with open(path) as f:
        return json.load(f)


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def row_of(table: Dict, arch: Sequence[int]) -> Dict | None:
    return next((r for r in table["rows"] if r["arch"] == list(arch)), None)


def run_env() -> Dict[str, str]:
    """The environment of a child run: this checkout's ``detnas_d2`` first on its path."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))


def run_dir(arch: Sequence[int], seed: int) -> str:
    return os.path.join(WORK_DIR, arch_string(arch).replace("-", ""), f"seed{seed}")


def train(arch: Sequence[int], seed: int, threads: int = 1) -> float:
    """bbox AP on shapes_val of ``arch`` trained stand-alone with :data:`SCHEDULE` and ``SEED seed``.

    Resumes a killed run from its last checkpoint (detectron2's resume is exact here, README "Failure and
    recovery"); deletes the run's checkpoints once its final metrics are written."""
    from detnas_d2.pipeline import last_metrics

    out = run_dir(arch, seed)
    done = os.path.join(out, "ap.json")
    if not os.path.isfile(done):
        overrides = [str(x) for kv in SCHEDULE.items() for x in kv]
        cmd = [
            sys.executable,
            "-m",
            "detnas_d2.cli.train",
            "--config-file",
            TRAIN_CONFIG,
            *overrides,
            *CHECKPOINT_OPTS,
            "MODEL.DETNAS.ARCH",
            arch_string(arch),
            "SEED",
            str(seed),
            "OUTPUT_DIR",
            out,
        ]
        if os.path.isfile(os.path.join(out, "last_checkpoint")):
            cmd.append("--resume")
        env = dict(run_env(), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "train.log"), "a") as log:
            subprocess.run(cmd, check=True, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        ap = last_metrics(out, raw=True)["bbox"]["AP"]
        from detnas_d2.utils.io import atomic_write

        atomic_write(done, json.dumps({"bbox/AP": ap}))
        for name in os.listdir(out):
            if name.endswith(".pth"):
                os.remove(os.path.join(out, name))
    with open(done) as f:
        return json.load(f)["bbox/AP"]
