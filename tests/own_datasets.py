"""Small detection datasets of your own on disk, drawn with OpenCV: a COCO json + image folder and a Pascal VOC
folder, with known boxes, for the registration and input-check tests."""

import json
import os

import cv2
import numpy as np

CATEGORIES = {3: "disc", 7: "bar"}  # non-contiguous ids on purpose: detectron2 maps them to 0, 1
NUM_IMAGES, SIZE = 12, 64


def _draw_objects(rng, image, count):
    """Draw ``count`` bright discs/bars on ``image``; return [(category id, x0, y0, w, h)]."""
    objects = []
    for _ in range(count):
        cat = int(rng.choice(list(CATEGORIES)))
        w, h = (int(v) for v in rng.integers(14, 30, size=2))
        x0, y0 = int(rng.integers(0, SIZE - w)), int(rng.integers(0, SIZE - h))
        color = tuple(int(c) for c in rng.integers(150, 256, size=3))
        if CATEGORIES[cat] == "disc":
            cv2.ellipse(image, (x0 + w // 2, y0 + h // 2), (w // 2, h // 2), 0, 0, 360, color, -1)
        else:
            cv2.rectangle(image, (x0, y0), (x0 + w - 1, y0 + h - 1), color, -1)
        objects.append((cat, x0, y0, w, h))
    return objects


def write_coco_dataset(root, num_images=NUM_IMAGES, seed=0):
    """A small COCO-format detection dataset drawn with OpenCV: (json file, image folder)."""
    rng = np.random.default_rng(seed)
    image_dir = os.path.join(root, "images")
    os.makedirs(image_dir)
    images, annotations = [], []
    for i in range(num_images):
        image = rng.integers(0, 60, size=(SIZE, SIZE, 3), dtype=np.uint8)
        image_id = 100 + i
        for cat, x0, y0, w, h in _draw_objects(rng, image, int(rng.integers(1, 3))):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cat,
                    "bbox": [x0, y0, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        cv2.imwrite(os.path.join(image_dir, f"img{i:03d}.jpg"), image)
        images.append({"id": image_id, "file_name": f"img{i:03d}.jpg", "height": SIZE, "width": SIZE})
    json_file = os.path.join(root, "annotations.json")
    with open(json_file, "w") as f:
        json.dump(
            {
                "images": images,
                "annotations": annotations,
                "categories": [{"id": i, "name": n} for i, n in CATEGORIES.items()],
            },
            f,
        )
    return json_file, image_dir


def write_voc_dataset(root, num_images, split="trainval"):
    """A small Pascal VOC folder (VOC2007 layout, classes dog/cat): (folder, {file id: [(class, xmin, ...)]})."""
    rng = np.random.default_rng(1)
    voc = os.path.join(root, "VOC2007")
    for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(voc, sub))
    boxes = {}
    for i in range(num_images):
        file_id = f"{i:06d}"
        image = rng.integers(0, 60, size=(SIZE, SIZE, 3), dtype=np.uint8)
        objects = [
            ("dog" if cat == 3 else "cat", x0 + 1, y0 + 1, x0 + w, y0 + h)  # VOC: 1-based, inclusive
            for cat, x0, y0, w, h in _draw_objects(rng, image, 2)
        ]
        cv2.imwrite(os.path.join(voc, "JPEGImages", f"{file_id}.jpg"), image)
        xml_objects = "".join(
            f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
            f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
            for n, a, b, c, d in objects
        )
        with open(os.path.join(voc, "Annotations", f"{file_id}.xml"), "w") as f:
            f.write(
                f"<annotation><filename>{file_id}.jpg</filename><size><width>{SIZE}</width>"
                f"<height>{SIZE}</height><depth>3</depth></size>{xml_objects}</annotation>"
            )
        boxes[file_id] = objects
    with open(os.path.join(voc, "ImageSets", "Main", f"{split}.txt"), "w") as f:
        f.write("".join(f"{file_id}\n" for file_id in boxes))
    return voc, boxes
