"""Print what the ground-truth files show: the benchmark's signal-to-noise ratio, how well the supernet and FLOPs
alone rank its architectures, and searched vs random winners.

    python benchmarks/ground_truth/analyze.py [--plot docs/ground_truth.png] [--scores FILE]

Reads ``shapes_det.json`` (required; rows with fewer than two seeds are left out of the noise estimate; the
seed-paired noise, the residual of an architecture x seed additive model, uses the rows with every seed),
``supernet_scores.json`` and ``search_vs_random.json`` (each when present). Rank statistics are against the
per-architecture mean AP: Kendall's tau, sparse tau (pairs whose means differ by less than the mean seed std
count as ties, Yu et al. ICLR 2020), Spearman's rho and the top-5 overlap, each with a 90 % percentile-bootstrap
interval over architectures; over all rows and over the 3 % FLOPs band.
"""

import argparse
import json
import math
import os
from statistics import mean, stdev

from detnas_d2.search.rank_stats import (
    bootstrap_interval,
    kendall_tau,
    noise_ceiling_tau,
    seed_paired_noise,
    signal_to_noise,
    spearman_rho,
    top_k_overlap,
)

HERE = os.path.dirname(os.path.abspath(__file__))


def load(name: str):
    path = os.path.join(HERE, name) if not os.path.isabs(name) else name
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def ranking_table(predictor, truth, noise: float) -> dict:
    """Every rank statistic of ``predictor`` against ``truth``, with its 90 % bootstrap interval."""
    k = min(5, len(truth))
    stats = {
        "tau": kendall_tau,
        "sparse_tau": lambda a, b: kendall_tau(a, b, y_tie=noise),
        "rho": spearman_rho,
        f"top{k}": lambda a, b: top_k_overlap(a, b, k) if len(set(map(tuple, zip(a, b)))) >= k else math.nan,
    }
    return {
        name: {"value": fn(list(predictor), list(truth)), "interval": bootstrap_interval(fn, predictor, truth)}
        for name, fn in stats.items()
    }


def print_ranking(title: str, table: dict) -> None:
    cells = [
        f"{name} {s['value']:+.2f} [{s['interval'][0]:+.2f}, {s['interval'][1]:+.2f}]" for name, s in table.items()
    ]
    print(f"  {title:34s} " + "   ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", default="shapes_det.json")
    parser.add_argument("--scores", default="supernet_scores.json")
    parser.add_argument("--search", default="search_vs_random.json")
    parser.add_argument("--plot", default="", help="write the scatter plots to this PNG")
    args = parser.parse_args()

    table = load(args.table)
    if table is None:
        raise SystemExit(f"no ground-truth table {args.table} in {HERE}: run generate.py first")
    rows = [r for r in table["rows"] if r["ap"]]
    runs = [list(r["ap"].values()) for r in rows]
    noise = mean(stdev(r) for r in runs if len(r) >= 2)
    means = [mean(r) for r in runs]
    print(f"ground truth: {len(rows)} architectures, {sum(map(len, runs))} runs, schedule {table['schedule']}")
    print(f"  mean AP {mean(means):.2f}, range {min(means):.2f}-{max(means):.2f}")
    print(
        f"  signal-to-noise {signal_to_noise(runs):.2f} = std of architecture means {stdev(means):.2f} / "
        f"mean seed std {noise:.2f}"
    )
    full = [r["ap"] for r in rows if len(r["ap"]) == max(map(len, runs))]
    if len(full) >= 2:
        paired = seed_paired_noise(full)
        full_means = [mean(r.values()) for r in full]
        print(
            f"  seed-paired: residual noise {paired:.2f} once each seed's shared effect is removed "
            f"({len(full)} complete rows); std of their means / it = {stdev(full_means) / paired:.2f}"
        )
    print(
        f"  noise ceiling: a perfect predictor is expected to reach tau {noise_ceiling_tau(runs):.2f} against these "
        "means (their seed noise reorders close architectures)"
    )
    band = [i for i, r in enumerate(rows) if r.get("group") == "band"]
    flops = [r["flops"] for r in rows]
    print("ranking against the architectures' mean AP (90 % bootstrap intervals):")
    predictors = {"FLOPs": flops}
    scores = load(args.scores)
    if scores is not None:
        by_arch = {tuple(s["arch"]): s["fitness"] for s in scores["scores"]}
        missing = [r["arch"] for r in rows if tuple(r["arch"]) not in by_arch]
        if missing:
            print(f"  ({len(missing)} rows have no supernet score yet: left out of the supernet lines)")
        predictors[f"supernet ({scores['scheme'].get('name', 'scheme')})"] = [
            by_arch.get(tuple(r["arch"]), math.nan) for r in rows
        ]
    results = {}
    for name, values in predictors.items():
        keep = [i for i, v in enumerate(values) if not math.isnan(v)]
        results[name] = ranking_table([values[i] for i in keep], [means[i] for i in keep], noise)
        print_ranking(f"{name}, all {len(keep)}", results[name])
        inside = [i for i in band if i in keep]
        if len(inside) >= 3:
            print_ranking(
                f"{name}, FLOPs band {len(inside)}",
                ranking_table([values[i] for i in inside], [means[i] for i in inside], noise),
            )
    search = load(args.search)
    if search is not None:
        print("searched vs random (winners' stand-alone AP, mean over their seeds):")
        summary = {}
        for method, winners in search.items():
            aps = [mean(w["ap"].values()) for w in winners if w.get("ap")]
            if len(aps) >= 2:
                summary[method] = (mean(aps), stdev(aps), len(aps))
                print(f"  {method:12s} {mean(aps):.2f} +- {stdev(aps):.2f} over {len(aps)} search seeds")
        if "evolution" in summary and "random" in summary:
            (m1, s1, n1), (m2, s2, n2) = summary["evolution"], summary["random"]
            se = math.sqrt(s1**2 / n1 + s2**2 / n2)
            print(
                f"  evolution - random = {m1 - m2:+.2f} AP = {(m1 - m2) / se if se else math.inf:+.2f} standard errors"
            )
    if args.plot:
        plot(rows, means, runs, predictors, args.plot)


def plot(rows, means, runs, predictors, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(predictors), figsize=(5 * len(predictors), 4.2), squeeze=False)
    errors = [stdev(r) if len(r) >= 2 else 0 for r in runs]
    colours = ["tab:orange" if r.get("group") == "band" else "tab:blue" for r in rows]
    for ax, (name, values) in zip(axes[0], predictors.items()):
        scale = 1e-6 if name == "FLOPs" else 1
        xs = [v * scale for v in values]
        ax.errorbar(xs, means, yerr=errors, fmt="none", ecolor="grey", alpha=0.5)
        ax.scatter(xs, means, c=colours)
        ax.set_xlabel("backbone MFLOPs" if name == "FLOPs" else f"{name} one-shot AP")
        ax.set_ylabel("stand-alone AP (mean +- std over seeds)")
        ax.set_title(f"{name}: tau {kendall_tau([x for x in xs], means):.2f} (orange: FLOPs band)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
