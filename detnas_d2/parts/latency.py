"""The "latency" search cost from ``cfg.SEARCH.LATENCY``: measured fixed-subnet latency or its block table.

Both are cached in ``OUTPUT_DIR/SEARCH.LATENCY.CACHE_FILE`` per device, input shape and backbone widths, so a
resumed or repeated search re-times nothing it timed before. See :mod:`detnas_d2.cost.latency` for what is timed.
"""

import os

from ..cost.latency import BlockLatencyTable, LatencyCache, LatencyMeasurer, MeasuredLatency
from ..cost.runtime_latency import ONNXRUNTIME, OnnxRuntimeLatencyMeasurer


def latency_measurer(cfg, body) -> LatencyMeasurer:
    """A measurer of ``body``'s (a ShuffleNetV2 supernet) fixed subnets with the ``SEARCH.LATENCY`` settings."""
    lat = cfg.SEARCH.LATENCY
    size = tuple(lat.INPUT_SIZE) or tuple(cfg.SEARCH.DETECTOR_INPUT_SIZE)
    onnxruntime = lat.DEVICE == ONNXRUNTIME
    return (OnnxRuntimeLatencyMeasurer if onnxruntime else LatencyMeasurer)(
        body.space,
        body.layout,
        style=body.style,
        device="cpu" if onnxruntime else lat.DEVICE or cfg.MODEL.DEVICE,
        batch_size=lat.BATCH_SIZE,
        input_size=size,
        warmup=lat.WARMUP,
        runs=lat.RUNS,
        clock=lat.CLOCK,
    )


def latency_cache(cfg) -> LatencyCache:
    """The latency cache file of this search folder."""
    return LatencyCache(os.path.join(cfg.OUTPUT_DIR, cfg.SEARCH.LATENCY.CACHE_FILE))


class LazyBlockTable:
    """The cached block table, loaded or measured at the first prediction: building the cost functions (e.g. in
    the pre-flight checks of a run that may be refused) times nothing and writes no file."""

    def __init__(self, measurer: LatencyMeasurer, cache: LatencyCache):
        self.measurer, self.cache = measurer, cache
        self.table = None

    def __call__(self, arch) -> float:
        """Predicted ms of ``arch``'s fixed subnet."""
        if self.table is None:
            self.table = BlockLatencyTable.cached(self.measurer, self.cache)
        return self.table(arch)


def build_latency_cost(cfg, body):
    """``arch -> ms`` per ``SEARCH.LATENCY.MODE``: "measure" times each path once, "lut" sums block latencies."""
    mode = cfg.SEARCH.LATENCY.MODE
    measurer, cache = latency_measurer(cfg, body), latency_cache(cfg)
    if mode == "measure":
        return MeasuredLatency(measurer, cache)
    if mode == "lut":
        return LazyBlockTable(measurer, cache)
    raise ValueError(f"cfg.SEARCH.LATENCY.MODE = {mode!r} has no latency cost: use 'measure' or 'lut'")
