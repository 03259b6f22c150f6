"""Does the supernet rank architectures like stand-alone training does?

    python -m detnas_d2.tools.ranking_check --search-config configs/shapes/search_fpn.yaml \
        --supernet output/pipeline/finetune/model_final.pth --train-config configs/shapes/supernet_fpn.yaml \
        --init output/pipeline/pretrain/model_final.pth --output-dir output/ranking [--spread 8 --band 6] \
        [--train-opts SOLVER.MAX_ITER 300 ...]

Architectures (fixed seed): ``--spread`` paths at evenly spaced quantiles of the backbone-FLOPs distribution of
uniform paths, ``--band`` paths inside a narrow FLOPs band around the median (so that "bigger is better"
alone cannot produce the correlation), and ``--eval-paths`` of the paths ``train_net.py`` scores when it
evaluates the supernet (``SUPERNET.EVAL.SEED``), so their stand-alone AP can be set beside the supernet's. Each is

- scored by the supernet exactly as the search scores a candidate (BN recalibrated, ``SEARCH.METRIC`` on
  ``SEARCH.DATASET``), and
- trained stand-alone with ``--train-config`` (fixed ``MODEL.DETNAS.ARCH``, weights inherited from ``--init`` as
  the pipeline's retrain stage does) and evaluated on that config's ``DATASETS.TEST``.

Writes ``ranking.json`` (every architecture with both scores and FLOPs, Kendall's tau-b and Spearman's rho over
all and within the band) and ``ranking.png`` (scatter). Finished stand-alone runs are reused on a rerun.
"""

import argparse
import io
import json
import os
import random
import subprocess
import sys
from typing import Dict, List, Sequence, Tuple

from ..search.rank_stats import kendall_tau, spearman_rho
from ..utils.io import atomic_write


def choose_architectures(
    space, flops, spread: int, band: int, seed: int, band_width: float = 0.03, pool: int = 2000
) -> Tuple[List[list], List[list]]:
    """``spread`` paths at FLOPs quantiles and ``band`` distinct paths within +-``band_width`` of the median."""
    rng = random.Random(seed)
    candidates = sorted((space.sample(rng) for _ in range(pool)), key=flops)
    picks = [candidates[round(i * (len(candidates) - 1) / max(spread - 1, 1))] for i in range(spread)]
    median = flops(candidates[len(candidates) // 2])
    in_band = [a for a in candidates if abs(flops(a) - median) <= band_width * median and a not in picks]
    rng.shuffle(in_band)
    if len(in_band) < band:
        raise ValueError(f"only {len(in_band)} sampled paths lie within {band_width:.0%} of the median FLOPs")
    return picks, in_band[:band]


def one_shot_scores(cfg, archs: Sequence[list]) -> List[float]:
    """The search's fitness of every ``arch`` on the supernet of ``cfg.MODEL.WEIGHTS`` (one process)."""
    from ..engine.trainer import Trainer
    from ..search.one_shot import OneShotFitness
    from ..search.runner import flatten_metrics
    from ..search.supernet_weights import load_supernet_weights

    model = Trainer.build_model(cfg)
    load_supernet_weights(cfg, model)
    fitness = OneShotFitness(cfg, model)
    return [flatten_metrics(result)[cfg.SEARCH.METRIC] for result in fitness(list(archs))]


def search_cfg(config_file: str, opts: Sequence[str]):
    """The search config (every detnas_d2 key, datasets registered), as search_net.py would build it."""
    from ..cli.defaults import load_cfg

    return load_cfg(argparse.Namespace(config_file=config_file, opts=list(opts)))


def stand_alone_ap(train_config: str, init: str, arch: Sequence[int], out: str, opts: Sequence[str]) -> float:
    """bbox AP of ``arch`` trained with ``train_config`` into ``out`` (reused when ``out`` finished)."""
    from ..pipeline import last_metrics

    if not os.path.isfile(os.path.join(out, "model_final.pth")):
        cmd = [
            sys.executable,
            "-m",
            "detnas_d2.cli.train",
            "--config-file",
            train_config,
            *(["--resume"] if os.path.isdir(out) else []),
            *opts,
            "MODEL.DETNAS.ARCH",
            "-".join(map(str, arch)),
            "MODEL.WEIGHTS",
            init,
            "OUTPUT_DIR",
            out,
        ]
        print("[ranking]", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    return last_metrics(out, raw=True)["bbox"]["AP"]


def correlation(pairs: Sequence[Tuple[float, float]]) -> Dict[str, float]:
    xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    return {"n": len(pairs), "kendall_tau": kendall_tau(xs, ys), "spearman_rho": spearman_rho(xs, ys)}


def plot(records: List[Dict], stats: Dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    flops = [r["mflops"] for r in records]
    for group, marker in (("spread", "o"), ("band", "s"), ("eval", "^")):
        rs = [r for r in records if r["group"] == group]
        if not rs:
            continue
        sc = ax.scatter(
            [r["one_shot"] for r in rs],
            [r["stand_alone"] for r in rs],
            c=[r["mflops"] for r in rs],
            marker=marker,
            cmap="viridis",
            vmin=min(flops),
            vmax=max(flops),
            label=f"{group} ({len(rs)})",
        )
    fig.colorbar(sc, ax=ax, label="backbone MFLOPs")
    ax.set_xlabel("supernet AP (BN recalibrated, search split)")
    ax.set_ylabel("stand-alone AP (retrained, val)")
    ax.set_title(
        f"tau {stats['all']['kendall_tau']:.2f}, rho {stats['all']['spearman_rho']:.2f} "
        f"(band: tau {stats['band']['kendall_tau']:.2f})"
    )
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buffer.getvalue())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--search-config", required=True)
    parser.add_argument("--supernet", required=True, help="fine-tuned supernet weights (scored one-shot)")
    parser.add_argument("--train-config", required=True, help="stand-alone training config (MODEL.DETNAS.ARCH set)")
    parser.add_argument(
        "--init",
        default="",
        help="weights the stand-alone runs start from (e.g. the pretrained supernet; empty = from scratch)",
    )
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--spread", type=int, default=8, help="paths spread over the FLOPs range")
    parser.add_argument("--band", type=int, default=6, help="paths within 3%% of the median FLOPs")
    parser.add_argument("--eval-paths", type=int, default=0, help="also the first N supernet evaluation paths")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-opts", nargs="*", default=[], help="KEY VALUE overrides of the stand-alone runs")
    parser.add_argument("--search-opts", nargs="*", default=[], help="KEY VALUE overrides of the search config")
    args = parser.parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)

    from ..cost import backbone_flops
    from ..space.backbone import BackboneSearchSpace

    cfg = search_cfg(args.search_config, ["MODEL.WEIGHTS", args.supernet, *args.search_opts])
    node = cfg.MODEL.DETNAS
    space = BackboneSearchSpace(node.SPACE)
    flops = lambda arch: backbone_flops(arch, space=node.SPACE, width_mult=node.WIDTH_MULT)  # noqa: E731
    spread, band = choose_architectures(space, flops, args.spread, args.band, args.seed)
    eval_rng = random.Random(cfg.SUPERNET.EVAL.SEED)  # the draws of Trainer.eval_paths
    evaluated = [space.sample(eval_rng) for _ in range(args.eval_paths)]
    archs = spread + band + evaluated
    groups = ["spread"] * len(spread) + ["band"] * len(band) + ["eval"] * len(evaluated)
    scores = one_shot_scores(cfg, archs)
    records = []
    for i, (arch, score, group) in enumerate(zip(archs, scores, groups)):
        out = os.path.join(os.path.abspath(args.output_dir), f"arch{i:02d}")
        records.append(
            {
                "arch": list(arch),
                "group": group,
                "mflops": flops(arch) / 1e6,
                "one_shot": score,
                "stand_alone": stand_alone_ap(args.train_config, args.init, arch, out, args.train_opts),
            }
        )
        print(f"[ranking] {i + 1}/{len(archs)}: {records[-1]}", flush=True)
    pairs = lambda rs: [(r["one_shot"], r["stand_alone"]) for r in rs]  # noqa: E731
    stats = {
        "all": correlation(pairs(records)),
        "band": correlation(pairs([r for r in records if r["group"] == "band"])),
        "flops_vs_stand_alone": correlation([(r["mflops"], r["stand_alone"]) for r in records]),
        "mean_one_shot": sum(r["one_shot"] for r in records) / len(records),
        "mean_stand_alone": sum(r["stand_alone"] for r in records) / len(records),
    }
    if evaluated:
        stats["eval_paths_mean_stand_alone"] = sum(r["stand_alone"] for r in records if r["group"] == "eval") / len(
            evaluated
        )
    atomic_write(
        os.path.join(args.output_dir, "ranking.json"), json.dumps({"stats": stats, "architectures": records}, indent=1)
    )
    plot(records, stats, os.path.join(args.output_dir, "ranking.png"))
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
