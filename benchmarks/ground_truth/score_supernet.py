"""Score every ground-truth architecture with a trained supernet exactly as the search does (BN recalibrated per
candidate, ``SEARCH.METRIC`` on ``SEARCH.DATASET``) into ``supernet_scores.json``.

    python benchmarks/ground_truth/score_supernet.py --supernet output/pipeline/finetune/model_final.pth \
        --name kernel-600 [--search-config configs/shapes/search_fpn.yaml] [--out supernet_scores.json] [KEY VALUE ...]

``--name`` and the trailing overrides are recorded as the scheme, so each training change of the README's ranking
table keeps its own file (``--out``).
"""

import argparse
import json
import os

from benchmark import HERE, architectures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--supernet", required=True, help="the fine-tuned detection supernet's weights")
    parser.add_argument("--name", required=True, help="the training scheme's name (recorded)")
    parser.add_argument("--search-config", default="configs/shapes/search_fpn.yaml")
    parser.add_argument("--out", default=os.path.join(HERE, "supernet_scores.json"))
    parser.add_argument("--note", default="", help="how the supernet was trained (recorded)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides of the search config")
    args = parser.parse_args()

    from detnas_d2.tools.ranking_check import one_shot_scores, search_cfg
    from detnas_d2.utils.io import atomic_write

    cfg = search_cfg(args.search_config, ["MODEL.WEIGHTS", args.supernet, *args.opts])
    archs = [spec["arch"] for spec in architectures()]
    fitness = one_shot_scores(cfg, archs)
    scheme = {
        "name": args.name,
        "supernet": args.supernet,
        "search_config": args.search_config,
        "overrides": args.opts,
        "note": args.note,
    }
    scores = [{"arch": a, "fitness": f} for a, f in zip(archs, fitness)]
    atomic_write(args.out, json.dumps({"scheme": scheme, "scores": scores}, indent=1) + "\n")
    print(f"wrote {len(scores)} scores to {args.out}")


if __name__ == "__main__":
    os.chdir(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    main()
