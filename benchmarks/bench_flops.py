"""Per-candidate time of the analytical FLOPs lookup vs fvcore counting a built network.

For random architectures of each space (width 1.0, 224x224, backbone-only count) it times
(a) BackboneCostModel.flops on an already built lookup table (the table's one-off build time is
printed separately), (b) fvcore's conv+linear count of an already built fixed network and
(c) building that network plus counting, checks that all counts agree, and prints the ratios.
Torch runs single-threaded so that machine load from other processes skews fvcore less.

    PYTHONPATH=. python benchmarks/bench_flops.py [--fvcore-candidates 5] [--fast-candidates 20000]
"""

import argparse
import random
import time

import torch

from detnas_d2.cost import BackboneCostModel, fvcore_conv_linear_flops
from detnas_d2.nn.shufflenet import ShuffleNetV2Fixed
from detnas_d2.space.backbone import BackboneSearchSpace


def bench_space(space: str, fvcore_candidates: int, fast_candidates: int, seed: int) -> None:
    """Time both counters on random candidates of ``space`` and print the comparison."""
    search_space = BackboneSearchSpace(space)
    rng = random.Random(seed)
    archs = [search_space.sample(rng) for _ in range(max(fvcore_candidates, fast_candidates))]

    start = time.perf_counter()
    cost_model = BackboneCostModel(space)
    table_seconds = time.perf_counter() - start

    start = time.perf_counter()
    fast_counts = [cost_model.flops(arch) for arch in archs[:fast_candidates]]
    fast_seconds = (time.perf_counter() - start) / fast_candidates

    build_seconds, count_seconds, mismatches = 0.0, 0.0, 0
    for arch in archs[:fvcore_candidates]:
        start = time.perf_counter()
        net = ShuffleNetV2Fixed(arch, space=space)
        built = time.perf_counter()
        reference = fvcore_conv_linear_flops(net, 224)
        count_seconds += time.perf_counter() - built
        build_seconds += built - start
        mismatches += reference != cost_model.flops(arch)
    count_seconds /= fvcore_candidates
    build_seconds /= fvcore_candidates

    print(f"[{space} space, {len(archs[0])} blocks, width 1.0, 224x224, backbone-only]")
    print(f"  lookup table build (once):       {table_seconds * 1e3:9.3f} ms")
    print(f"  fast path per candidate:         {fast_seconds * 1e6:9.3f} us  ({fast_candidates} candidates)")
    print(f"  fvcore count per candidate:      {count_seconds * 1e3:9.3f} ms  ({fvcore_candidates} candidates)")
    print(f"  network build per candidate:     {build_seconds * 1e3:9.3f} ms")
    print(f"  ratio fvcore count / fast:       {count_seconds / fast_seconds:9.0f}x")
    print(f"  ratio (build + fvcore) / fast:   {(build_seconds + count_seconds) / fast_seconds:9.0f}x")
    print(f"  counts agree on all {fvcore_candidates} fvcore candidates: {mismatches == 0}")
    print(f"  mean FLOPs of the fast candidates: {sum(fast_counts) / len(fast_counts) / 1e6:.1f} M")


def main() -> None:
    """Parse arguments and benchmark both spaces."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fvcore-candidates", type=int, default=5, help="candidates counted by fvcore per space")
    parser.add_argument("--fast-candidates", type=int, default=20000, help="candidates counted by the lookup table")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for space in ("small", "large"):
        bench_space(space, args.fvcore_candidates, args.fast_candidates, args.seed)


if __name__ == "__main__":
    main()
