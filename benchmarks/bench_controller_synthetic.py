"""PPO controller vs evolution vs random search on a synthetic fitness with a known optimum, through the real search
loop (``SearchRunner``), over the small DetNAS backbone space (20 positions x 4 choices).

The fitness of a path is the number of positions that match a hidden target path (the optimum scores 20), so what
each strategy learns is visible without training anything. Prints the best fitness of every strategy and seed,
and with ``--plot FILE`` draws the mean best-so-far curve per strategy against the number of evaluated candidates.

    PYTHONPATH=. python benchmarks/bench_controller_synthetic.py [--seeds 0 1 2] [--population 20]
        [--generations 20] [--plot docs/controller_synthetic.png]
"""

import argparse
import random
from statistics import mean

from detnas_d2.search.controller import ControllerStrategy
from detnas_d2.search.runner import SearchRunner
from detnas_d2.search.strategies import EvolutionStrategy, RandomSearchStrategy
from detnas_d2.space.backbone import BackboneSearchSpace


class MatchesFitness:
    """Fitness = positions equal to ``target``, reported as COCO-style results; keeps every score in order."""

    def __init__(self, target):
        self.target = list(target)
        self.scores = []

    def __call__(self, archs):
        results = []
        for arch in archs:
            self.scores.append(float(sum(int(a == t) for a, t in zip(arch, self.target))))
            results.append({"bbox": {"AP": self.scores[-1]}})
        return results


def build_strategy(name: str, space, seed: int, population: int, generations: int):
    """The strategy ``name`` with the SEARCH.* defaults of search_net.py for that strategy."""
    common = dict(population=population, generations=generations, topk=10, seed=seed, max_random_tries=1000)
    if name == "controller":
        return ControllerStrategy(space, **common)
    if name == "evolution":
        return EvolutionStrategy(
            space,
            num_mutation=population // 2,
            num_crossover=population // 2,
            mutation_prob=0.1,
            max_tries_factor=10,
            **common,
        )
    return RandomSearchStrategy(space, **common)


def best_so_far(scores):
    """Running maximum of a score sequence."""
    best, curve = float("-inf"), []
    for score in scores:
        best = max(best, score)
        curve.append(best)
    return curve


def plot(curves, path):
    """Mean best-so-far per strategy (one line each) against the number of evaluated candidates."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, per_seed in curves.items():
        length = min(len(c) for c in per_seed)
        axes.plot(range(1, length + 1), [mean(c[i] for c in per_seed) for i in range(length)], label=name)
    axes.axhline(20, color="grey", linestyle=":", label="optimum")
    axes.set_xlabel("evaluated candidates")
    axes.set_ylabel(f"best matches so far (mean of {len(next(iter(curves.values())))} seeds)")
    axes.set_title("synthetic fitness, 20 positions x 4 choices")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--plot", help="write the best-so-far curves to this PNG")
    args = parser.parse_args()
    space = BackboneSearchSpace("small")
    curves = {}
    for name in ("controller", "evolution", "random"):
        curves[name] = []
        for seed in args.seeds:
            fitness = MatchesFitness(space.sample(random.Random(1000 + seed)))
            strategy = build_strategy(name, space, seed, args.population, args.generations)
            result = SearchRunner(space, strategy, fitness, metric="bbox/AP", plot_each_generation=False).run()
            curves[name].append(best_so_far(fitness.scores))
            print(f"{name:<10} seed {seed}: best {result.best.fitness:.0f} / 20 after {result.n_evaluated} candidates")
    for name, per_seed in curves.items():
        print(f"{name:<10} mean best {mean(c[-1] for c in per_seed):.1f} / 20")
    if args.plot:
        plot(curves, args.plot)
        print(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
