"""detnas-export: a tiny searched detector exported to TorchScript (trace, script) and ONNX and verified against the
eager model; an export whose weights changed after tracing fails the check; the plugin imports without onnx."""

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model

import detnas_d2  # noqa: F401
from detnas_d2.cli import export as export_cli
from detnas_d2.config import add_detnas_config
from detnas_d2.cost.latency import LatencyCache, MeasuredLatency
from detnas_d2.cost.runtime_latency import OnnxRuntimeLatencyMeasurer
from detnas_d2.deploy.export import FILE_NAMES, ExportError, eager_runner, export_onnx, load_runner
from detnas_d2.deploy.verify import ExportMismatch, differences, verification_images, verify
from detnas_d2.modeling.checkpoint import DetNASCheckpointer
from detnas_d2.parts.latency import build_latency_cost
from detnas_d2.search.config import validate_search_config
from detnas_d2.space.backbone import smallest_width_mult, space_layout
from presets import REPO, SEARCH_CONFIG, SUPERNET_CONFIG, SUPERNET_TINY, TEST_AT_64, TINY_LATENCY, shapes_images

#: the tiny searched detector: a fixed path of the SUPERNET_TINY Faster R-CNN FPN, verified on 2 images of 64 px
TINY_DETECTOR = [
    *SUPERNET_TINY,
    "MODEL.DETNAS.ARCH",
    "0123-3210-01230123-0123",
    *shapes_images(2, 2, 2, image_size=64),
    *TEST_AT_64,
]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A search-style export (best_config.yaml + best_weights.pth) of the tiny detector, exported by the command
    into ``out``: (the command's arguments, its exit code, the output folder)."""
    root = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DETNAS_DATA", str(root / "data"))
        args = export_cli.argument_parser().parse_args(
            ["--config-file", SUPERNET_CONFIG, "--output", "x", *TINY_DETECTOR]
        )
        cfg = export_cli.load_cfg(args).clone()
        cfg.defrost()
        torch.manual_seed(0)
        weights = str(root / "best_weights.pth")
        torch.save({"model": build_model(cfg).state_dict()}, weights)
        cfg.MODEL.WEIGHTS = weights
        with open(root / "best_config.yaml", "w") as f:
            f.write(cfg.dump())
        argv = ["--config-file", str(root / "best_config.yaml"), "--output", str(root / "out"), "--num-images", "2"]
        code = export_cli.run(argv)
        yield argv, code, str(root / "out")


def test_export_writes_verified_torchscript_and_onnx(searched, capsys):
    _, code, out = searched
    assert code == 0
    for name in FILE_NAMES.values():
        assert os.path.getsize(os.path.join(out, name)) > 0
    assert sorted(os.listdir(out)) == sorted([*FILE_NAMES.values(), export_cli.REPORT_FILE])  # no temporary files


def test_weights_changed_after_tracing_fail_the_check(searched, monkeypatch):
    argv, _, out = searched
    monkeypatch.setenv("DETNAS_DATA", os.path.join(os.path.dirname(out), "data"))
    args = export_cli.argument_parser().parse_args(argv)
    cfg = export_cli.load_cfg(args)
    model = build_model(cfg).eval()
    DetNASCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    images = verification_images(cfg, "shapes_val", 2)
    eager = eager_runner(model)
    for name, file_name in FILE_NAMES.items():
        with open(os.path.join(out, file_name), "rb") as f:
            runner = load_runner(name, f.read(), model, images[0][1])
        verify(name, eager, runner, images)  # the written files match the weights they were exported from
    with torch.no_grad():
        model.roi_heads.box_predictor.bbox_pred.bias.add_(0.5)  # changed after tracing: boxes move
    for name, file_name in FILE_NAMES.items():
        with open(os.path.join(out, file_name), "rb") as f:
            runner = load_runner(name, f.read(), model, images[0][1])
        with pytest.raises(
            ExportMismatch, match=rf"{name} export differs from the eager model on image val_000000\.jpg"
        ):
            verify(name, eager, runner, images)


def test_plugin_imports_and_builds_without_onnx(tmp_path):
    script = f"""
import sys
sys.modules["onnx"] = sys.modules["onnxruntime"] = None  # as if not installed
import detnas_d2, detnas_d2.deploy.export, detnas_d2.cost.runtime_latency
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detnas_d2.config import add_detnas_config, merge_from_file
from detnas_d2.cli.export import run
cfg = get_cfg()
add_detnas_config(cfg)
merge_from_file(cfg, {SUPERNET_CONFIG!r})
cfg.merge_from_list({TINY_DETECTOR!r})
build_model(cfg)
sys.exit(run(["--config-file", {SUPERNET_CONFIG!r}, "--output", {str(tmp_path)!r}, "--format", "onnx"]))
"""
    env = dict(os.environ, PYTHONPATH=REPO, DETNAS_DATA=str(tmp_path / "data"))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "needs the package 'onnx'" in done.stderr and "pip install onnx" in done.stderr
    assert not os.listdir(tmp_path)  # failed before writing anything


@pytest.mark.unit
def test_unsupported_onnx_op_names_the_op_and_the_alternative(monkeypatch):
    def refuse(*args, **kwargs):
        raise torch.onnx.errors.UnsupportedOperatorError("aten::fancy_op", 17, None)

    monkeypatch.setattr(torch.onnx, "export", refuse)
    with pytest.raises(ExportError, match=r"cannot take the op aten::fancy_op .*--format torchscript-trace"):
        export_onnx(torch.nn.Identity(), torch.zeros(3, 8, 8))


@pytest.mark.unit
def test_differences_pair_detections_by_class_and_ignore_the_order_of_ties():
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 5.0, 5.0]])
    reference = {"pred_boxes": boxes, "scores": torch.tensor([0.5, 0.5]), "pred_classes": torch.tensor([1, 2])}
    swapped = {key: value.flip(0) for key, value in reference.items()}
    assert differences(reference, swapped)["box"] == 0 and differences(reference, swapped)["unpaired"] == 0
    other_class = dict(swapped, pred_classes=torch.tensor([3, 1]))
    assert differences(reference, other_class)["unpaired"] == 1
    moved = dict(reference, pred_boxes=boxes + 0.01)
    assert differences(reference, moved)["box"] == pytest.approx(0.01, abs=1e-5)


def test_onnxruntime_latency_is_measured_once_and_cached_under_its_own_key(tmp_path):
    layout = space_layout("small").scaled(smallest_width_mult(space_layout("small")))
    path = str(tmp_path / "latency_cache.json")

    def measurer():
        return OnnxRuntimeLatencyMeasurer("small", layout, input_size=(32, 32), warmup=0, runs=1)

    first = measurer()
    arch = [0, 1, 2, 3] * 5
    value = MeasuredLatency(first, LatencyCache(path))(arch)
    assert value > 0 and first.num_measured == 1 and first.key.startswith("onnxruntime-")
    again = measurer()
    assert MeasuredLatency(again, LatencyCache(path))(arch) == value and again.num_measured == 0
    with pytest.raises(ValueError, match="MODE 'measure'"):
        again.measure_in_context(0)


def test_search_latency_device_onnxruntime_times_candidates_in_onnxruntime(tmp_path):
    cfg = add_detnas_config(get_cfg())
    cfg.merge_from_file(SEARCH_CONFIG)
    cfg.merge_from_list(
        [*SUPERNET_TINY, *TINY_LATENCY, "OUTPUT_DIR", str(tmp_path), "SEARCH.LATENCY.MODE", "measure"]
        + ["SEARCH.LATENCY.DEVICE", "onnxruntime"]
    )
    validate_search_config(cfg)
    body = SimpleNamespace(space="small", layout=space_layout("small").scaled(0.25), style="detnas")
    cost = build_latency_cost(cfg, body)
    assert isinstance(cost.measurer, OnnxRuntimeLatencyMeasurer) and cost([0, 1, 2, 3] * 5) > 0
    cfg.SEARCH.LATENCY.MODE = "lut"
    with pytest.raises(ValueError, match=r"LATENCY\.DEVICE = 'onnxruntime' is invalid: .*MODE 'measure'"):
        validate_search_config(cfg)
