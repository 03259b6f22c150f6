"""Check an export against the eager model on dataset images: same counts and classes, boxes and scores close.

Tolerances are the deployment contract: boxes within 1e-3 px, scores within 1e-4, identical classes and counts.
"""

import os
from typing import Dict, List, Tuple

import torch
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from detectron2.data.detection_utils import read_image

from .export import Detections, Runner

BOX_TOLERANCE = 1e-3
SCORE_TOLERANCE = 1e-4


class ExportMismatch(AssertionError):
    """An export whose detections differ from the eager model's; the message names the image and the difference."""


def verification_images(cfg, dataset: str, num_images: int) -> List[Tuple[str, torch.Tensor]]:
    """The first ``num_images`` images of ``dataset`` as the model's test input: ``(file name, CHW float tensor)``."""
    if num_images < 1:
        raise ValueError(f"--num-images must be >= 1, got {num_images}")
    if dataset not in DatasetCatalog.list():
        raise ValueError(
            f"dataset {dataset!r} is not registered; registered: {', '.join(sorted(DatasetCatalog.list()))}"
        )
    records = DatasetCatalog.get(dataset)[:num_images]
    if not records:
        raise ValueError(f"dataset {dataset!r} has no images to verify the export on")
    resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    images = []
    for record in records:
        image = read_image(record["file_name"], format=cfg.INPUT.FORMAT)
        image = resize.get_transform(image).apply_image(image)
        images.append(
            (os.path.basename(record["file_name"]), torch.as_tensor(image.astype("float32").transpose(2, 0, 1)))
        )
    return images


def differences(reference: Detections, exported: Detections) -> Dict[str, float]:
    """Counts, and over detections paired greedily (each reference one, by score, with the closest unpaired exported
    one of its class: equal scores may come out in either order) the largest box and score differences and how
    many reference detections found no exported one of their class."""
    count, other = len(reference["scores"]), len(exported["scores"])
    result = {"count": count, "exported_count": other, "box": 0.0, "score": 0.0, "unpaired": 0}
    if count != other or not count:
        return result
    box = (reference["pred_boxes"][:, None] - exported["pred_boxes"][None]).abs().amax(-1)
    score = (reference["scores"][:, None] - exported["scores"][None]).abs()
    same_class = reference["pred_classes"][:, None] == exported["pred_classes"][None]
    cost = torch.where(same_class, torch.maximum(box / BOX_TOLERANCE, score / SCORE_TOLERANCE), torch.inf)
    for row in torch.argsort(reference["scores"], descending=True, stable=True).tolist():
        column = int(cost[row].argmin())
        if not torch.isfinite(cost[row, column]):
            result["unpaired"] += 1
            continue
        result["box"] = max(result["box"], box[row, column].item())
        result["score"] = max(result["score"], score[row, column].item())
        cost[:, column] = torch.inf
    return result


def verify(name: str, eager: Runner, exported: Runner, images: List[Tuple[str, torch.Tensor]]) -> Dict[str, float]:
    """Compare ``exported`` with ``eager`` on every image; raise :class:`ExportMismatch` at the first mismatch."""
    worst = {"images": len(images), "detections": 0, "max_box_diff": 0.0, "max_score_diff": 0.0}
    for file_name, image in images:
        diff = differences(eager(image), exported(image))
        problem = None
        if diff["count"] != diff["exported_count"]:
            problem = f"{diff['exported_count']} detections instead of the eager model's {diff['count']}"
        elif diff["unpaired"]:
            problem = f"{diff['unpaired']} of {diff['count']} detections have no exported detection of their class"
        elif diff["box"] > BOX_TOLERANCE or diff["score"] > SCORE_TOLERANCE:
            problem = (
                f"largest box difference {diff['box']:.3g} px (allowed {BOX_TOLERANCE}), largest score difference "
                f"{diff['score']:.3g} (allowed {SCORE_TOLERANCE})"
            )
        if problem:
            raise ExportMismatch(f"{name} export differs from the eager model on image {file_name}: {problem}")
        worst["detections"] += diff["count"]
        worst["max_box_diff"] = max(worst["max_box_diff"], diff["box"])
        worst["max_score_diff"] = max(worst["max_score_diff"], diff["score"])
    return worst


def export_verified(model, formats, images, output_dir: str, opset: int) -> Tuple[Dict[str, Dict], Dict[str, str]]:
    """Export ``model`` in each format, verify it on ``images`` and only then write its file into ``output_dir``:
    (report of the verified formats, ``{format: error message}`` of the others)."""
    from ..utils.io import atomic_write
    from .export import EXPORTERS, FILE_NAMES, ExportError, check_exportable, eager_runner, load_runner

    check_exportable(model)
    eager, report, failed = eager_runner(model), {}, {}
    os.makedirs(output_dir, exist_ok=True)
    for name in formats:
        try:
            data = EXPORTERS[name](model, images[0][1], opset)
            row = verify(name, eager, load_runner(name, data, model, images[0][1]), images)
        except (ExportError, ExportMismatch) as error:
            failed[name] = str(error)
            continue
        row["file"] = os.path.join(output_dir, FILE_NAMES[name])
        atomic_write(row["file"], data)
        report[name] = row
    return report, failed
