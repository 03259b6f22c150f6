"""Latency of fixed subnets where they are deployed: exported to ONNX and run in onnxruntime on CPU, or traced to
TorchScript. Same timing schedule, cache and cost functions as :mod:`detnas_d2.cost.latency`; only ``_time``
differs. onnx/onnxruntime are imported inside functions, so the plugin imports without them.
"""

import io

import torch
from torch import nn

from ..utils.optional import require
from .latency import LatencyMeasurer, median_ms

#: the SEARCH.LATENCY.DEVICE value that times candidates in onnxruntime
ONNXRUNTIME = "onnxruntime"
#: the ONNX opset of timed networks (the one detnas-export writes by default)
ONNX_OPSET = 17


def onnx_session(module: nn.Module, x: torch.Tensor, threads: int):
    """An onnxruntime CPU session of ``module`` exported on ``x`` with ``threads`` intra-op threads."""
    ort = require("onnxruntime", "SEARCH.LATENCY.DEVICE 'onnxruntime'")
    require("onnx", "SEARCH.LATENCY.DEVICE 'onnxruntime' (torch.onnx.export)")
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(module.eval(), (x,), buffer, opset_version=ONNX_OPSET, input_names=["x"])
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])


class OnnxRuntimeLatencyMeasurer(LatencyMeasurer):
    """Times fixed subnets and blocks as ONNX graphs in onnxruntime on CPU, with torch's thread count."""

    def __init__(self, *args, **kwargs):
        if kwargs.get("device", "cpu") not in ("cpu", "onnxruntime"):
            raise ValueError(f"onnxruntime latency runs on CPU only, got device {kwargs['device']!r}")
        kwargs["device"] = "cpu"
        super().__init__(*args, **kwargs)

    @property
    def key(self) -> str:
        """Cache key: onnxruntime's version, the CPU and thread count, then the usual shape and widths."""
        ort = require("onnxruntime", "SEARCH.LATENCY.DEVICE 'onnxruntime'")
        return f"onnxruntime-{ort.__version__}:opset={ONNX_OPSET}:{super().key}"  # super(): the CPU's key

    def _time(self, module: nn.Module, x: torch.Tensor) -> float:
        """Median ms of one onnxruntime run of ``module`` exported on ``x``."""
        session = onnx_session(module, x, torch.get_num_threads())
        feed = {session.get_inputs()[0].name: x.numpy()}
        self.num_measured += 1
        return median_ms(
            lambda: session.run(None, feed), self.warmup, self.runs, self.device, self.statistic, self.clock
        )

    def measure_in_context(self, choice: int):
        """Not available: onnxruntime runs a graph as a whole, so blocks cannot be timed inside a forward."""
        raise ValueError(
            "SEARCH.LATENCY.DEVICE 'onnxruntime' times whole exported networks: use SEARCH.LATENCY.MODE 'measure' "
            "(a block table needs per-block timings inside PyTorch forwards, MODE 'lut' with a torch device)"
        )


class TorchScriptLatencyMeasurer(LatencyMeasurer):
    """Times fixed subnets and blocks traced to TorchScript (frozen, as deployed) on the measurer's device."""

    @property
    def key(self) -> str:
        """Cache key of the TorchScript runtime: the eager key with a ``torchscript`` prefix."""
        return f"torchscript|{super().key}"

    def _time(self, module: nn.Module, x: torch.Tensor) -> float:
        """Median ms of the traced, frozen ``module`` on ``x``."""
        module = module.to(self.device).eval()
        with torch.no_grad():
            traced = torch.jit.freeze(torch.jit.trace(module, (x,), strict=False))
        self.num_measured += 1
        return median_ms(lambda: traced(x), self.warmup, self.runs, self.device, self.statistic, self.clock)
