"""Measured latency of DetNAS backbone paths: timing, a per-device JSON cache, and a per-block lookup table.

What is timed: the FIXED subnet of a path (``ShuffleNetV2Fixed`` with the supernet's widths, eval mode, no grad),
not the supernet running that path. The fixed network is what gets deployed; the supernet's path pays a
per-position dispatch (and, with kernel sharing, weight slicing) that a deployed model does not, so timing it
would rank paths by an overhead that disappears after export. Weights do not affect latency: random init is used.

Pure PyTorch (no detectron2): the lookup-table check runs on a machine that has only torch.
"""

import json
import os
import platform
import statistics
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

import torch
from torch import nn

from ..nn.blocks import CandidateBlock, build_stem
from ..nn.norm import norm_factory
from ..nn.shufflenet import ShuffleNetV2Fixed
from ..space.backbone import NUM_CHOICES, STAGE_NAMES, BackboneLayout, format_architecture, parse_architecture
from ..utils.io import atomic_write

#: how the timed runs of one measurement are reduced: "median" (the search cost) or "min" (robust to a loaded CPU)
STATISTICS = {"median": statistics.median, "min": min}
#: timers: "wall" (elapsed time; the only one valid on CUDA) or "cpu" (process CPU time: on a CPU shared with other
#: jobs it leaves out the time this process waits for a core, which wall-clock medians include)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
#: version of the cache file layout; a file of another version is ignored (and rewritten)
CACHE_VERSION = 1


def device_key(device: torch.device) -> str:
    """A name of the timing device: the GPU model on CUDA, the CPU and its thread count otherwise."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine() or "cpu"
    return f"cpu:{cpu}:threads={torch.get_num_threads()}"


def shape_key(batch_size: int, height: int, width: int) -> str:
    """The input-shape part of a cache key, e.g. ``1x3x800x1333``."""
    return f"{batch_size}x3x{height}x{width}"


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(
    fn: Callable[[], Any], warmup: int, runs: int, device: torch.device, statistic: str = "median", clock: str = "wall"
) -> float:
    """Median (or ``statistic``) ms of ``fn()`` on ``clock`` over ``runs`` timed calls after ``warmup`` untimed ones."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    times, now = [], CLOCKS[clock]
    with torch.no_grad():
        for index in range(warmup + runs):
            synchronize(device)
            start = now()
            fn()
            synchronize(device)
            if index >= warmup:
                times.append((now() - start) * 1e3)
    return STATISTICS[statistic](times)


class LatencyMeasurer:
    """Times fixed subnets (and single blocks) of one layout on one device and input shape.

    ``num_measured`` counts timed networks and blocks: tests use it to prove that a cache was reused.

    Args:
        space: backbone search space of the subnets.
        layout: their (scaled) widths.
        style: "detnas" or "spos" (see :class:`~detnas_d2.nn.shufflenet.ShuffleNetV2Fixed`).
        device: the device timed on.
        batch_size: images per timed forward.
        input_size: (height, width) of the input.
        warmup: untimed forwards before the timed ones.
        runs: timed forwards per measurement.
        statistic: how the timed runs are summarised ("median", ...; see ``STATISTICS``).
        clock: "wall" or, on CPU only, "cpu" (process time).
    """

    def __init__(
        self,
        space: str,
        layout: BackboneLayout,
        style: str = "detnas",
        device="cpu",
        batch_size: int = 1,
        input_size: Sequence[int] = (224, 224),
        warmup: int = 5,
        runs: int = 20,
        statistic: str = "median",
        clock: str = "wall",
    ):
        if statistic not in STATISTICS:
            raise ValueError(f"statistic {statistic!r} unknown; allowed: {list(STATISTICS)}")
        if clock not in CLOCKS or (clock == "cpu" and torch.device(device).type == "cuda"):
            raise ValueError(f"clock {clock!r} invalid on {device}; allowed: 'wall' on CUDA, {list(CLOCKS)} on CPU")
        self.space, self.layout, self.style = space, layout, style
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.height, self.width = (int(v) for v in input_size)
        self.warmup, self.runs = int(warmup), int(runs)
        self.statistic, self.clock = statistic, clock
        self.num_measured = 0

    @property
    def key(self) -> str:
        """Cache key of this device, input shape and layout."""
        widths = ",".join(map(str, (self.layout.stem_channels,) + tuple(self.layout.stage_channels)))
        key = f"{device_key(self.device)}|{shape_key(self.batch_size, self.height, self.width)}|widths={widths}"
        key = key if self.statistic == "median" else f"{key}|{self.statistic}"
        return key if self.clock == "wall" else f"{key}|clock={self.clock}"

    def _time(self, module: nn.Module, x: torch.Tensor) -> float:
        """Median ms of ``module(x)`` in eval mode on this device."""
        module = module.to(self.device).eval()
        self.num_measured += 1
        return median_ms(lambda: module(x), self.warmup, self.runs, self.device, self.statistic, self.clock)

    def _input(self, channels: int, height: int, width: int) -> torch.Tensor:
        """A random input of this batch size."""
        return torch.randn(self.batch_size, channels, height, width, device=self.device)

    def fixed_network(self, arch: Any) -> ShuffleNetV2Fixed:
        """The fixed subnet of ``arch`` with this layout's widths (stage outputs, no head)."""
        return ShuffleNetV2Fixed(arch, space=self.space, layout=self.layout, style=self.style, out_features=STAGE_NAMES)

    def measure(self, arch: Any) -> float:
        """Median milliseconds of one forward of the fixed subnet of ``arch``."""
        return self._time(self.fixed_network(arch), self._input(3, self.height, self.width))

    def block_shapes(self) -> List[Tuple[int, int, int, int, int]]:
        """``(c_in, c_out, stride, height, width)`` of the input of every block position."""
        shapes, height, width = [], (self.height + 1) // 2, (self.width + 1) // 2  # after the stride-2 stem
        for c_in, c_out, stride in self.layout.block_channels():
            shapes.append((c_in, c_out, stride, height, width))
            if stride == 2:
                height, width = (height + 1) // 2, (width + 1) // 2
        return shapes

    def measure_in_context(self, choice: int) -> Tuple[float, List[float]]:
        """Median ms of the stem and of every block inside full forwards of the uniform path ``choice``."""
        net = self.fixed_network([choice] * self.layout.num_blocks).to(self.device).eval()
        x = self._input(3, self.height, self.width)
        samples: List[List[float]] = [[] for _ in range(self.layout.num_blocks + 1)]
        self.num_measured += 1
        with torch.no_grad():
            for index in range(self.warmup + self.runs):
                times = _timed_forward(net, x, choice, self.device, CLOCKS[self.clock])
                if index >= self.warmup:
                    for column, value in zip(samples, times):
                        column.append(value)
        medians = [STATISTICS[self.statistic](column) for column in samples]
        return medians[0], medians[1:]

    def measure_stem(self) -> float:
        """Median ms of the stem alone."""
        stem = build_stem(3, self.layout.stem_channels, norm_factory("BN"), bias=self.style == "detnas")
        return self._time(stem, self._input(3, self.height, self.width))

    def measure_block(self, choice: int, c_in: int, c_out: int, stride: int, height: int, width: int) -> float:
        """Median ms of one candidate block on its input shape."""
        block = CandidateBlock(choice, c_in, c_out, stride, norm_factory("BN"))
        return self._time(block, self._input(c_in, height, width))


def _timed_forward(
    net: ShuffleNetV2Fixed, x: torch.Tensor, choice: int, device: torch.device, now: Callable[[], float]
) -> List[float]:
    """Milliseconds (on the clock ``now``) of the stem and of each block during one forward of a uniform path."""
    times = []
    synchronize(device)
    start = now()
    for module in [net.stem] + list(net.blocks):
        x = module(x) if module is net.stem else module(x, choice)
        synchronize(device)
        end = now()
        times.append((end - start) * 1e3)
        start = end
    return times


def _read_json(path: str) -> Dict[str, Any]:
    """The cache file's content, or an empty cache if it is missing or of another version."""
    if not os.path.exists(path):
        return {"version": CACHE_VERSION, "measured": {}, "tables": {}}
    with open(path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"latency cache {path} is not valid JSON ({error}); delete it to re-measure") from None
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {"version": CACHE_VERSION, "measured": {}, "tables": {}}
    return data


class LatencyCache:
    """A JSON file of measured latencies and block tables, keyed per device, input shape and layout.

    Every update rewrites the whole file atomically (temporary file renamed over it), so a killed search never
    leaves a truncated cache; another run reading the same file reuses every entry of its key.
    """

    def __init__(self, path: str):
        self.path = path
        self.data = _read_json(path)

    def _save(self) -> None:
        """Write the cache atomically."""
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        atomic_write(self.path, json.dumps(self.data, indent=1, sort_keys=True))

    def get(self, key: str, arch_key: str) -> float | None:
        """The cached latency of ``arch_key`` under ``key``, or None."""
        return self.data["measured"].get(key, {}).get(arch_key)

    def put(self, key: str, arch_key: str, value: float) -> None:
        """Store one measurement and save the file."""
        self.data["measured"].setdefault(key, {})[arch_key] = value
        self._save()

    def get_table(self, key: str) -> Dict[str, Any] | None:
        """The stored block table of ``key``, or None."""
        return self.data["tables"].get(key)

    def put_table(self, key: str, table: Dict[str, Any]) -> None:
        """Store a block table and save the file."""
        self.data["tables"][key] = table
        self._save()


class MeasuredLatency:
    """Cost function ``arch -> ms``: the fixed subnet measured once per architecture, then read from the cache."""

    def __init__(self, measurer: LatencyMeasurer, cache: LatencyCache):
        self.measurer, self.cache = measurer, cache

    def __call__(self, arch: Any) -> float:
        """Cached or freshly measured median ms of ``arch``."""
        encoding = parse_architecture(arch, space=self.measurer.space).encoding
        arch_key = format_architecture(encoding)
        value = self.cache.get(self.measurer.key, arch_key)
        if value is None:
            value = self.measurer.measure(encoding)
            self.cache.put(self.measurer.key, arch_key, value)
        return value


#: how a block table is measured: inside full forwards of the 4 uniform paths, or each block alone
TABLE_METHODS = ("in_context", "isolated")


class BlockLatencyTable:
    """Per position x choice latency predicting a path's latency as stem + the sum of its blocks.

    "in_context" (default) times every block inside full forwards of the uniform paths 0000..., 1111..., etc.,
    so each entry pays the cache state a real forward leaves (4 networks timed). "isolated" times each distinct
    (block shape, choice) alone, repeatedly on one input: its data stay in cache, so it underestimates on CPU.
    """

    def __init__(self, stem_ms: float, blocks: Sequence[Sequence[float]], space: str):
        self.stem_ms = float(stem_ms)
        self.blocks = [list(map(float, row)) for row in blocks]
        self.space = space

    @classmethod
    def measure(cls, measurer: LatencyMeasurer, method: str = "in_context") -> "BlockLatencyTable":
        """Time the table by ``method`` (one of :data:`TABLE_METHODS`)."""
        if method == "isolated":
            return cls.measure_isolated(measurer)
        if method != "in_context":
            raise ValueError(f"block table method {method!r} unknown; allowed: {list(TABLE_METHODS)}")
        stems, columns = zip(*(measurer.measure_in_context(choice) for choice in range(NUM_CHOICES)))
        return cls(statistics.median(stems), [list(row) for row in zip(*columns)], measurer.space)

    @classmethod
    def measure_isolated(cls, measurer: LatencyMeasurer) -> "BlockLatencyTable":
        """Time the stem and every distinct (block shape, choice) once, each block alone."""
        timed: Dict[Tuple[int, ...], float] = {}
        rows = []
        for shape in measurer.block_shapes():
            for choice in range(NUM_CHOICES):
                if (choice,) + shape not in timed:
                    timed[(choice,) + shape] = measurer.measure_block(choice, *shape)
            rows.append([timed[(choice,) + shape] for choice in range(NUM_CHOICES)])
        return cls(measurer.measure_stem(), rows, measurer.space)

    @classmethod
    def cached(cls, measurer: LatencyMeasurer, cache: LatencyCache) -> "BlockLatencyTable":
        """The table of ``measurer``'s key from ``cache``, measured and stored there if missing."""
        stored = cache.get_table(measurer.key)
        if stored is not None:
            return cls(stored["stem_ms"], stored["blocks"], measurer.space)
        table = cls.measure(measurer)
        cache.put_table(measurer.key, {"stem_ms": table.stem_ms, "blocks": table.blocks})
        return table

    def __call__(self, arch: Any) -> float:
        """Predicted ms of the fixed subnet of ``arch``."""
        encoding = parse_architecture(arch, space=self.space).encoding
        return self.stem_ms + sum(row[choice] for row, choice in zip(self.blocks, encoding))


def relative_errors(predicted: Sequence[float], measured: Sequence[float]) -> Tuple[float, float]:
    """(mean, max) of ``|predicted - measured| / measured``."""
    errors = [abs(p - m) / m for p, m in zip(predicted, measured)]
    return sum(errors) / len(errors), max(errors)
