"""Export a fixed detector (Faster R-CNN / RetinaNet with any registered backbone and neck) to TorchScript and ONNX.

Three formats; :func:`load_runner` runs an exported file as ``image -> {"pred_boxes", "scores", "pred_classes"}``:

- ``torchscript-trace``: detectron2's ``TracingAdapter`` traced by ``torch.jit.trace`` (fixed control flow);
- ``torchscript-script``: detectron2's ``scripting_with_instances`` over the meta-architecture and heads, with the
  backbone (DetNAS blocks select their candidate by a Python dict, which TorchScript cannot script) traced inside;
- ``onnx``: the same ``TracingAdapter`` through ``torch.onnx.export`` (opset >= 17), run in onnxruntime on CPU.

Outputs are detections before ``detector_postprocess`` (boxes in input-image pixels, not clipped for RetinaNet), as
detectron2's ``tools/deploy/export_model.py``; apply ``detector_postprocess`` to rescale them to the original image.
"""

import copy
import io
import re
from typing import Callable, Dict, List, Tuple

import torch
from detectron2.export import TracingAdapter, scripting_with_instances
from detectron2.layers import CycleBatchNormList
from detectron2.modeling import Backbone, GeneralizedRCNN, RetinaNet
from detectron2.structures import Boxes, Instances
from torch import nn

from ..utils.optional import require

FORMATS = ("torchscript-trace", "torchscript-script", "onnx")
#: file written for each format
FILE_NAMES = {"torchscript-trace": "model_trace.ts", "torchscript-script": "model_script.ts", "onnx": "model.onnx"}
#: the lowest ONNX opset accepted (ROIAlign with aligned=True needs 16; detectron2's STABLE_ONNX_OPSET_VERSION is 11)
MIN_OPSET = 17
#: detector fields compared by the verification
FIELDS = ("pred_boxes", "scores", "pred_classes")
#: meta-architectures that export
SUPPORTED = (GeneralizedRCNN, RetinaNet)

Detections = Dict[str, torch.Tensor]
Runner = Callable[[torch.Tensor], Detections]


class ExportError(RuntimeError):
    """A model or op that a format cannot take; the message names it and the alternative."""


def check_exportable(model: nn.Module) -> None:
    """Fail unless ``model`` is a Faster R-CNN-style or RetinaNet detector in eval mode with fixed architecture."""
    if not isinstance(model, SUPPORTED):
        raise ExportError(
            f"MODEL.META_ARCHITECTURE {type(model).__name__} cannot be exported: allowed are "
            f"{', '.join(t.__name__ for t in SUPPORTED)}"
        )
    from ..parts.model import searchable_parts

    parts = searchable_parts(model)
    if parts:
        raise ExportError(
            f"the model holds one-shot supernet parts {sorted(parts)}: export a fixed architecture (a search's "
            "best_config.yaml, or MODEL.DETNAS.ARCH set to a name/encoding and MODEL.NASFPN.ONE_SHOT False)"
        )


def detections(instances: Instances) -> Detections:
    """The compared fields of ``instances`` as plain tensors."""
    fields = instances.get_fields() if isinstance(instances, Instances) else instances
    boxes = fields["pred_boxes"]
    return {
        "pred_boxes": getattr(boxes, "tensor", boxes).detach().float(),
        "scores": fields["scores"].detach().float(),
        "pred_classes": fields["pred_classes"].detach().long(),
    }


def eager_instances(model: nn.Module, inputs: List[Dict[str, torch.Tensor]]) -> List[Instances]:
    """What every export computes: detections before ``detector_postprocess``, in input-image pixels (as detectron2's
    export_model.py: scripted RetinaNet skips the post-processing, so the others skip it too)."""
    if isinstance(model, GeneralizedRCNN):
        return model.inference(inputs, do_postprocess=False)
    images = model.preprocess_image(inputs)
    features = model.backbone(images.tensor)
    features = [features[f] for f in model.head_in_features]
    return model.forward_inference(images, features, model.head(features))


def eager_runner(model: nn.Module) -> Runner:
    """The eager model as a runner (the reference of every verification)."""

    def run(image: torch.Tensor) -> Detections:
        with torch.no_grad():
            return detections(eager_instances(model, [{"image": image}])[0])

    return run


def tracing_adapter(model: nn.Module, image: torch.Tensor) -> TracingAdapter:
    """detectron2's ``TracingAdapter`` of ``model`` on the sample ``image`` (eval mode: torch.onnx.export restores
    the adapter's own mode on every submodule)."""
    return TracingAdapter(
        model, [{"image": image}], lambda m, inputs: [{"instances": i} for i in eager_instances(m, inputs)]
    ).eval()


def _schema_runner(adapter: TracingAdapter, run_flat: Callable[[torch.Tensor], Tuple]) -> Runner:
    """A runner from a flat-output function, rebuilding Instances with the adapter's output schema."""

    def run(image: torch.Tensor) -> Detections:
        with torch.no_grad():
            outputs = run_flat(image)
        return detections(adapter.outputs_schema(tuple(outputs))[0]["instances"])

    return run


def _save_torchscript(module: torch.jit.ScriptModule) -> bytes:
    """The serialized TorchScript module."""
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    return buffer.getvalue()


def export_trace(model: nn.Module, image: torch.Tensor, opset: int = MIN_OPSET) -> bytes:
    """TorchScript by tracing ``TracingAdapter`` on ``image``: the file's bytes."""
    with torch.no_grad():
        return _save_torchscript(torch.jit.trace(tracing_adapter(model, image), (image,)))


class TracedBackbone(Backbone):
    """A traced backbone (bottom-up + neck) with the attributes the scripted meta-architecture reads."""

    padding: Dict[str, int]

    def __init__(self, traced: torch.jit.ScriptModule, original: Backbone):
        super().__init__()
        self.traced = traced
        self.divisibility = int(original.size_divisibility)
        self.padding = {str(k): int(v) for k, v in original.padding_constraints.items()}
        shapes = original.output_shape()
        self._out_features = list(shapes)
        self._out_feature_channels = {k: v.channels for k, v in shapes.items()}
        self._out_feature_strides = {k: v.stride for k, v in shapes.items()}

    @property
    def size_divisibility(self) -> int:
        return self.divisibility

    @property
    def padding_constraints(self) -> Dict[str, int]:
        return self.padding

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.traced(x)


class ScriptableRCNN(nn.Module):
    """Faster R-CNN returning field dicts (detectron2's export_model.py adapter: scripted Instances cannot leave)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: Tuple[Dict[str, torch.Tensor]]) -> List[Dict[str, torch.Tensor]]:
        return [i.get_fields() for i in self.model.inference(inputs, do_postprocess=False)]


class ScriptableRetinaNet(ScriptableRCNN):
    """RetinaNet returning field dicts."""

    def forward(self, inputs: Tuple[Dict[str, torch.Tensor]]) -> List[Dict[str, torch.Tensor]]:
        return [i.get_fields() for i in self.model(inputs)]


#: the Instances fields a scripted detector may carry, with their types (as in detectron2's export_model.py)
SCRIPT_FIELDS = {
    "proposal_boxes": Boxes,
    "objectness_logits": torch.Tensor,
    "pred_boxes": Boxes,
    "scores": torch.Tensor,
    "pred_classes": torch.Tensor,
}


def export_script(model: nn.Module, image: torch.Tensor, opset: int = MIN_OPSET) -> bytes:
    """TorchScript by scripting the meta-architecture and heads around the traced backbone: the file's bytes."""
    cycled = [name for name, module in model.named_modules() if isinstance(module, CycleBatchNormList)]
    if cycled:
        raise ExportError(
            f"TorchScript scripting cannot compile detectron2's CycleBatchNormList ({cycled[0]}: one norm per level, "
            "from MODEL.RETINANET.NORM): export with --format torchscript-trace or onnx instead"
        )
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        features_input = model.preprocess_image([{"image": image}]).tensor
        traced = torch.jit.trace(model.backbone, (features_input,), strict=False)
    model.backbone = TracedBackbone(traced, model.backbone)
    adapter = (ScriptableRCNN if isinstance(model, GeneralizedRCNN) else ScriptableRetinaNet)(model).eval()
    try:
        return _save_torchscript(scripting_with_instances(adapter, SCRIPT_FIELDS))
    except RuntimeError as error:  # torch.jit.frontend errors: a construct TorchScript cannot compile
        raise ExportError(
            f"TorchScript scripting cannot compile {unscriptable_code(error)} of {type(model).__name__}: export with "
            "--format torchscript-trace or onnx instead (tracing records the ops, whatever Python ran them)"
        ) from error


def unscriptable_code(error: BaseException) -> str:
    """Where a scripting error points: ``file:line`` and the reason's first line."""
    text = str(error).strip()
    where = re.findall(r'File "([^"]+)", line (\d+)', text)
    reason = text.splitlines()[0].split(". ")[0] if text else type(error).__name__
    return f"{where[-1][0]}:{where[-1][1]} ({reason})" if where else reason


def unsupported_op(error: BaseException) -> str:
    """The op an ONNX export error names (``aten::...``), or the error's first line."""
    text = str(error)
    match = re.search(r"'?((?:aten|prim|onnx|torchvision|_caffe2|detectron2)::\w+)'?", text)
    return match.group(1) if match else (text.strip().splitlines() or [type(error).__name__])[0]


def export_onnx(model: nn.Module, image: torch.Tensor, opset: int = MIN_OPSET) -> bytes:
    """ONNX of ``TracingAdapter`` (opset >= 17, H and W dynamic) checked by onnx: the file's bytes."""
    if opset < MIN_OPSET:
        raise ValueError(f"ONNX opset {opset} is too old: use {MIN_OPSET} or later")
    onnx = require("onnx", "ONNX export")
    adapter = tracing_adapter(model, image)
    buffer = io.BytesIO()
    try:
        with torch.no_grad():
            torch.onnx.export(
                adapter,
                (image,),
                buffer,
                opset_version=opset,
                input_names=["image"],
                dynamic_axes={"image": {1: "height", 2: "width"}},
            )
    except (torch.onnx.errors.OnnxExporterError, RuntimeError) as error:
        raise ExportError(
            f"ONNX export at opset {opset} cannot take the op {unsupported_op(error)} of {type(model).__name__}: "
            "export with --format torchscript-trace or torchscript-script instead (TorchScript runs every op), "
            f"or try a later --opset ({type(error).__name__}: {str(error).strip().splitlines()[0]})"
        ) from error
    onnx.checker.check_model(onnx.load_from_string(buffer.getvalue()))
    return buffer.getvalue()


def load_runner(name: str, data: bytes, model: nn.Module, image: torch.Tensor) -> Runner:
    """A runner of the exported bytes ``data`` of format ``name``; ``model`` run once on ``image`` gives the layout
    of the flat trace/ONNX outputs (detectron2's output schema), so what was written is what gets verified."""
    if name == "torchscript-script":
        scripted = torch.jit.load(io.BytesIO(data))

        def run(x: torch.Tensor) -> Detections:
            with torch.no_grad():
                return detections(scripted(({"image": x},))[0])

        return run
    adapter = tracing_adapter(model, image)
    with torch.no_grad():
        adapter(image)  # records adapter.outputs_schema
    if name == "onnx":
        ort = require("onnxruntime", "running an ONNX export")
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        feed = session.get_inputs()[0].name
        return _schema_runner(adapter, lambda x: [torch.from_numpy(v) for v in session.run(None, {feed: x.numpy()})])
    return _schema_runner(adapter, torch.jit.load(io.BytesIO(data)))


EXPORTERS = {"torchscript-trace": export_trace, "torchscript-script": export_script, "onnx": export_onnx}
