"""``detnas-export`` / ``python -m detnas_d2.cli.export``: write a fixed detector as TorchScript and ONNX, each
verified against the eager model on dataset images before the command succeeds.

Input: a config with its weights (a search's ``best_config.yaml``, whose MODEL.WEIGHTS is ``best_weights.pth``, or
any fixed DetNAS / NAS-FPN config with MODEL.WEIGHTS given as an override).
"""

import argparse
import json
import logging
import os
import sys

from detectron2.modeling import build_model
from detectron2.utils.logger import setup_logger

from ..deploy.export import FORMATS, MIN_OPSET, ExportError
from ..deploy.verify import export_verified, verification_images
from ..modeling.checkpoint import DetNASCheckpointer
from ..utils.io import atomic_write
from ..utils.optional import MissingDependencyError, require
from .defaults import load_cfg

REPORT_FILE = "export_report.json"


def argument_parser() -> argparse.ArgumentParser:
    """The command's options; trailing KEY VALUE pairs override the config."""
    from ..data.registration import add_registration_arguments

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="detnas-export")
    parser.add_argument("--config-file", required=True, help="detector config, e.g. a search's best_config.yaml")
    parser.add_argument("--output", required=True, help="folder for the exported files and export_report.json")
    parser.add_argument(
        "--format", default=",".join(FORMATS), help=f"comma-separated formats to write, of {', '.join(FORMATS)}"
    )
    parser.add_argument("--num-images", type=int, default=10, help="images the exports are verified on")
    parser.add_argument("--dataset", default="shapes_val", help="registered dataset the images come from")
    parser.add_argument("--opset", type=int, default=MIN_OPSET, help=f"ONNX opset (>= {MIN_OPSET})")
    add_registration_arguments(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE config overrides")
    return parser


def formats(value: str) -> list:
    """The formats named in ``--format`` (comma-separated), each checked."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not names:
        raise ExportError(f"--format {value!r} names {unknown or 'no format'}: allowed are {', '.join(FORMATS)}")
    return names


def export(args):
    """Load the detector of ``args``, export and verify every requested format: (report, failures)."""
    args.format = formats(args.format)
    if "onnx" in args.format:  # name a missing package before minutes of model building
        require("onnx", "detnas-export --format onnx")
        require("onnxruntime", "detnas-export --format onnx (verification in onnxruntime)")
    cfg = load_cfg(args)
    model = build_model(cfg).eval()
    if cfg.MODEL.WEIGHTS:
        DetNASCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    else:
        logging.getLogger("detnas_d2").warning("MODEL.WEIGHTS is empty: exporting randomly initialised weights")
    images = verification_images(cfg, args.dataset, args.num_images)
    report, failed = export_verified(model, args.format, images, args.output, args.opset)
    content = {"verified": report, "failed": failed, "num_images": len(images), "dataset": args.dataset}
    atomic_write(os.path.join(args.output, REPORT_FILE), json.dumps(content, indent=1, sort_keys=True))
    return report, failed


def format_report(report: dict) -> str:
    """One line per format: file, images, detections and the largest differences."""
    lines = [f"{'format':<20} {'images':>6} {'dets':>6} {'max box diff px':>16} {'max score diff':>15}  file"]
    for name, row in report.items():
        lines.append(
            f"{name:<20} {row['images']:>6} {row['detections']:>6} {row['max_box_diff']:>16.3g} "
            f"{row['max_score_diff']:>15.3g}  {row['file']}"
        )
    return "\n".join(lines)


def run(argv=None) -> int:
    """Console entry point: 0 when every requested export is verified and written, 1 naming each failure."""
    args = argument_parser().parse_args(argv)
    setup_logger(name="detnas_d2")
    try:
        report, failed = export(args)
    except (ExportError, MissingDependencyError) as error:
        print(f"detnas-export: {error}", file=sys.stderr)
        return 1
    if report:
        print(format_report(report))
    for name, message in failed.items():
        print(f"detnas-export: {name} not written: {message}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run())
