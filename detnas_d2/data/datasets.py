"""Dataset registration: the embedded shapes splits, their classification view, COCO's search split, and
``register_from_config`` (the config's own datasets and held-out split, then checks of every named dataset).

DetNAS holds 5,000 images out of COCO train as the search (fitness) set; ``coco_2017_search5k`` and
``coco_2017_train_minus_search5k`` reproduce that split deterministically (fixed seed over image ids).
"""

import os
from typing import Dict, List, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .registration import (
    check_bad_image_policy,
    check_num_classes,
    held_out_names,
    held_out_split,
    register_entries,
    register_held_out_split,
    set_json_file,
    write_subset_json,
)
from .shapes import SHAPE_CLASSES, SPLITS, ShapesSpec, ensure_shapes

COCO_SEARCH_SEED = 0
COCO_SEARCH_SIZE = 5000
COCO_SEARCH_SPLITS = {
    # name -> (image folder, annotation file, take the held-out part?)
    "coco_2017_train_minus_search5k": ("coco/train2017", "coco/annotations/instances_train2017.json", False),
    "coco_2017_search5k": ("coco/train2017", "coco/annotations/instances_train2017.json", True),
}

#: ``evaluator_type`` metadata of classification datasets (dicts with a ``label``)
CLASSIFICATION_EVALUATOR_TYPE = "classification"
#: dataset name -> folder under $DETECTRON2_DATASETS (ImageNet layout: <folder>/<wnid>/*.JPEG)
IMAGENET_SPLITS = {"imagenet_train": "imagenet/train", "imagenet_val": "imagenet/val"}
#: the split whose sorted subfolders define the ImageNet class indices of every split
IMAGENET_CLASS_SPLIT = "imagenet_train"

_registered_shapes: Dict[str, ShapesSpec] = {}


def datasets_root() -> str:
    """detectron2's convention: ``$DETECTRON2_DATASETS``, default ``./datasets``."""
    return os.path.expanduser(os.environ.get("DETECTRON2_DATASETS", "datasets"))


def _reregister(name: str, loader, **metadata):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(**metadata)


def load_image_folder(root: str, classes: Sequence[str]) -> List[Dict]:
    """An ImageFolder-layout split (``root/<class>/*.jpg``) as detectron2 dicts with an integer ``label``."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder {root} does not exist (expected {root}/<class>/*.jpg)")
    dicts = []
    for label, name in enumerate(classes):
        class_dir = os.path.join(root, name)
        if not os.path.isdir(class_dir):
            raise FileNotFoundError(f"class folder {class_dir} is missing (classes: {list(classes)})")
        for fname in sorted(os.listdir(class_dir)):
            if fname.lower().endswith((".jpg", ".jpeg", ".png", ".bmp")):
                dicts.append({"file_name": os.path.join(class_dir, fname), "image_id": len(dicts), "label": label})
    if not dicts:
        raise ValueError(f"image folder {root} contains no images")
    return dicts


def register_shapes(spec: ShapesSpec = ShapesSpec(), root: str = None) -> None:
    """(Re-)register ``shapes_{train,search,val}`` and ``shapes_cls_{train,val}`` for ``spec``.

    Generation happens lazily, on the first load of any split.
    """
    classes = list(SHAPE_CLASSES)
    for split in SPLITS:
        name = f"shapes_{split}"

        def load(split=split, name=name):
            folder = ensure_shapes(spec, root)
            json_file = os.path.join(folder, f"{split}.json")
            set_json_file(name, json_file)  # the data root ($DETNAS_DATA) may have changed since registration
            return load_coco_json(json_file, os.path.join(folder, split), name)

        _reregister(name, load, thing_classes=classes, evaluator_type="coco")
        _registered_shapes[name] = spec
    for split in ("train", "val"):
        name = f"shapes_cls_{split}"

        def load_cls(split=split):
            return load_image_folder(os.path.join(ensure_shapes(spec, root), "cls", split), classes)

        _reregister(name, load_cls, classes=classes, evaluator_type=CLASSIFICATION_EVALUATOR_TYPE)
        _registered_shapes[name] = spec


def _coco_search_split(name: str, image_dir: str, json_file: str, held_out: bool) -> List[Dict]:
    rest, held = held_out_split(
        load_coco_json(json_file, image_dir, name),
        COCO_SEARCH_SIZE,
        COCO_SEARCH_SEED,
        json_file,
        size_key="the DetNAS COCO search split size",
    )
    if not held_out:
        return rest
    set_json_file(name, write_subset_json(json_file, {d["image_id"] for d in held}, name))
    return held


def register_coco_search_splits() -> List[str]:
    """Register the DetNAS COCO split where its files exist under ``DETECTRON2_DATASETS``; return the names."""
    registered = []
    for name, (image_dir, json_file, held_out) in COCO_SEARCH_SPLITS.items():
        image_dir = os.path.join(datasets_root(), image_dir)
        json_file = os.path.join(datasets_root(), json_file)
        if not (os.path.isdir(image_dir) and os.path.isfile(json_file)):
            continue

        def load(name=name, image_dir=image_dir, json_file=json_file, held_out=held_out):
            return _coco_search_split(name, image_dir, json_file, held_out)

        _reregister(name, load, image_root=image_dir, evaluator_type="coco")
        registered.append(name)
    return registered


def _sorted_subfolders(root: str) -> List[str]:
    """Class names of an ImageNet-layout folder: its subfolders, sorted."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder {root} does not exist (expected {root}/<class>/<image>)")
    return sorted(entry.name for entry in os.scandir(root) if entry.is_dir())


def _register_folder(name: str, root: str, classes: List[str] | None, class_root: str) -> None:
    """Register ``root`` lazily; class names are ``classes`` or, on first load, the subfolders of ``class_root``."""

    def load():
        resolved = classes if classes is not None else _sorted_subfolders(class_root)
        MetadataCatalog.get(name).set(classes=resolved)
        return load_image_folder(root, resolved)

    metadata = {"image_root": root, "evaluator_type": CLASSIFICATION_EVALUATOR_TYPE}
    if classes is not None:
        metadata["classes"] = classes
    _reregister(name, load, **metadata)


def register_image_folder(name: str, root: str, classes: Sequence[str] | None = None) -> None:
    """Register the ImageNet-layout folder ``root/<class>/<image>`` as classification dataset ``name``.

    Labels are indices into ``classes``; ``None`` = the sorted subfolder names, read when the dataset is first
    loaded (registration itself touches no files).
    """
    _register_folder(name, root, None if classes is None else list(classes), class_root=root)


def _imagenet_root(name: str) -> str:
    return os.path.join(datasets_root(), IMAGENET_SPLITS[name])


def register_imagenet_splits() -> List[str]:
    """Register ``imagenet_train`` / ``imagenet_val`` where their folders exist; return the names registered.

    Only checks that the folders exist; both splits take their class list from the train folder.
    """
    registered = []
    for name in IMAGENET_SPLITS:
        if os.path.isdir(_imagenet_root(name)):
            _register_folder(name, _imagenet_root(name), None, class_root=_imagenet_root(IMAGENET_CLASS_SPLIT))
            registered.append(name)
    return registered


def ensure_imagenet_registered(name: str, key: str) -> None:
    """For an ImageNet split name: register it, or raise FileNotFoundError naming ``key`` and the missing folder.

    A no-op for other names, so it can run on every dataset a config names (before the generic lookup).
    """
    if name not in IMAGENET_SPLITS or name in DatasetCatalog.list():
        return
    root = _imagenet_root(name)
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"{key} names dataset '{name}', which needs the ImageNet folder {root}/<wnid>/*.JPEG "
            f"(DETECTRON2_DATASETS={datasets_root()}); not found"
        )
    register_imagenet_splits()


def check_datasets_exist(names: Sequence[str], key: str) -> None:
    """Fail early, naming the config key and what is missing, if a dataset is not registered."""
    for name in names:
        ensure_imagenet_registered(name, key)
        if name in DatasetCatalog.list():
            continue
        if name in COCO_SEARCH_SPLITS:
            image_dir, json_file, _ = COCO_SEARCH_SPLITS[name]
            raise FileNotFoundError(
                f"{key} names dataset '{name}', which needs {os.path.join(datasets_root(), json_file)} and "
                f"{os.path.join(datasets_root(), image_dir)}/ (DETECTRON2_DATASETS={datasets_root()}); not found"
            )
        available = sorted(n for n in DatasetCatalog.list() if not n.startswith(("keypoints_", "lvis_")))
        raise KeyError(
            f"{key} names dataset '{name}', which is not registered. Register it (--register-coco NAME JSON "
            "IMAGE_DIR, --register-voc NAME DIR SPLIT or DATASETS.REGISTER) or pick one of: "
            f"{', '.join(available[:40])}" + (" ..." if len(available) > 40 else "")
        )


def register_builtin_datasets() -> None:
    """Register the default shapes splits (once), and the COCO search split and ImageNet where their folders exist.

    Called by :func:`register_from_config` rather than at import, so importing the package looks at no folder.
    """
    if not _registered_shapes:
        register_shapes()
    register_coco_search_splits()
    register_imagenet_splits()


def register_shapes_sizes(**sizes) -> None:
    """The built-in datasets, with the shapes splits (re-)registered at the ``ShapesSpec`` fields ``sizes`` (yacs:
    ``DATASETS.SHAPES``, LazyConfig: the ``shapes`` dict) where they differ; unknown fields are errors."""
    register_builtin_datasets()
    allowed = ("num_train", "num_search", "num_val", "image_size", "seed")
    unknown = sorted(set(sizes) - set(allowed))
    if unknown:
        raise ValueError(f"shapes keys {unknown} unknown; allowed: {list(allowed)}")
    spec = ShapesSpec(**sizes)
    if _registered_shapes.get("shapes_train") != spec:
        register_shapes(spec)


def register_from_config(cfg) -> None:
    """Apply ``DATASETS.SHAPES`` sizes, register ``DATASETS.REGISTER`` and ``DATASETS.SEARCH_HOLDOUT``, then
    check that every dataset the config names exists and has ``NUM_CLASSES`` classes. Runs in every process."""
    s = cfg.DATASETS.SHAPES
    register_shapes_sizes(
        num_train=s.NUM_TRAIN, num_search=s.NUM_SEARCH, num_val=s.NUM_VAL, image_size=s.IMAGE_SIZE, seed=s.SEED
    )
    register_entries(cfg.DATASETS.REGISTER)
    holdout = cfg.DATASETS.SEARCH_HOLDOUT
    if holdout.SIZE > 0:
        source, train_name, search_name = held_out_names(cfg)
        check_datasets_exist([source], "DATASETS.SEARCH_HOLDOUT.SOURCE")
        register_held_out_split(source, holdout.SIZE, holdout.SEED, train_name, search_name)
    named = {"DATASETS.TRAIN": cfg.DATASETS.TRAIN, "DATASETS.TEST": cfg.DATASETS.TEST}
    if cfg.SEARCH.DATASET:
        named["SEARCH.DATASET"] = [cfg.SEARCH.DATASET]
    for key, names in named.items():
        check_datasets_exist(names, key)
    check_num_classes(cfg, named)
    check_bad_image_policy(cfg.DATALOADER.ON_BAD_IMAGE)
