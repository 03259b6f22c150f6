"""benchmarks/gpu_supernet.py runs end to end (--quick, CPU) in a process where detectron2 cannot be imported."""

import json
import os
import subprocess
import sys

from presets import REPO

SCRIPT = os.path.join(REPO, "benchmarks", "gpu_supernet.py")

#: run in the child: a meta-path finder makes any detectron2 / fvcore import fail, then the script runs as __main__
CHILD = """
import runpy, sys

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("detectron2", "fvcore"):
            raise ImportError(f"{name} is blocked: the benchmark must run with only torch")
        return None

sys.meta_path.insert(0, Blocker())
sys.argv = [sys.argv[1]] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
blocked = sorted(name for name in sys.modules if name.split(".")[0] in ("detectron2", "fvcore"))
assert not blocked, blocked
print("IMPORTED", sorted({name.split(".")[0] for name in sys.modules if name.startswith("detnas_d2")}))
"""


def test_quick_benchmark_runs_without_detectron2(tmp_path):
    out = str(tmp_path / "bench.json")
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, SCRIPT, "--device", "cpu", "--quick", "--json", out],
        env=env,
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "IMPORTED ['detnas_d2']" in proc.stdout
    with open(out) as f:
        result = json.load(f)
    assert {row["bench"] for row in result["training"]} == {"train-cls", "train-det"}
    assert len(result["training"]) == 8 and len(result["necks"]) == 4  # 2 tasks x AMP x channels_last; necks x grid
    for row in result["training"] + result["necks"]:
        assert row["ratio"] > 0
