"""Compare two output folders of ``tools/reference_searches.sh``: every search's log, state, best architecture and
Pareto front must be equal once wall-clock fields are dropped; ``best_config.yaml`` must be equal with each
folder's own path replaced. Prints one line per file ("same" / "DIFF" / "MISSING"); exit status 1 on any difference.

    python tools/compare_searches.py OUT_BEFORE OUT_AFTER
"""

import json
import os
import sys

#: fields that hold wall-clock times, which differ from run to run
TIMING_FIELDS = {"eval_time_s", "elapsed_s", "time", "timestamp", "seconds"}
COMPARED_FILES = ("search_log.jsonl", "search_state.json", "best_arch.json", "pareto_front.json", "best_config.yaml")


def without_timing(value):
    """``value`` with every timing field (and the run's own output folder) removed, recursively."""
    if isinstance(value, dict):
        return {
            key: without_timing(item)
            for key, item in value.items()
            if key not in TIMING_FIELDS and not key.endswith("_time_s") and key != "output_dir"
        }
    if isinstance(value, list):
        return [without_timing(item) for item in value]
    return value


def load(path: str, root: str):
    """A compared file's content: parsed JSON without timing fields, or text with ``root`` replaced by OUT."""
    with open(path) as f:
        if path.endswith(".jsonl"):
            return [without_timing(json.loads(line)) for line in f]
        if path.endswith(".json"):
            return without_timing(json.load(f))
        return f.read().replace(os.path.abspath(root), "OUT")


def main(before: str, after: str) -> int:
    differences = 0
    for run in sorted(os.listdir(before)):
        folder = os.path.join(before, run)
        if not os.path.isdir(folder) or "data" in run or "supernet" in run:
            continue
        for name in COMPARED_FILES:
            if not os.path.exists(os.path.join(folder, name)):
                continue
            other = os.path.join(after, run, name)
            if not os.path.exists(other):
                print("MISSING", run, name)
                differences += 1
            elif load(os.path.join(folder, name), before) != load(other, after):
                print("DIFF", run, name)
                differences += 1
            else:
                print("same", run, name)
    return 1 if differences else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
