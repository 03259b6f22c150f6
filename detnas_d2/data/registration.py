"""Your own data without Python: COCO-format and Pascal VOC datasets registered from the command line or the
config, a held-out search split carved from any registered dataset, and clear errors for the usual mistakes.

``DATASETS.REGISTER`` entries are registered in every process (``setup_cfg`` runs inside detectron2's
``launch`` workers); re-registering a name with the same files is a no-op, another definition is an error.
"""

import functools
import hashlib
import json
import logging
import os
import re
from typing import Dict, List, Sequence, Set, Tuple

from detectron2.config import CfgNode as CN
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json, register_pascal_voc
from detectron2.structures import BoxMode

from ..utils.io import atomic_write
from ..utils.subset import seeded_subset_indices
from .shapes import default_data_root

logger = logging.getLogger(__name__)

#: the forms of a ``DATASETS.REGISTER`` entry, by kind
ENTRY_FORMS = {
    "coco": '["coco", NAME, JSON_FILE, IMAGE_DIR]',
    "voc": '["voc", NAME, VOC_DIR, SPLIT]',
}
#: allowed values of ``DATALOADER.ON_BAD_IMAGE``
BAD_IMAGE_POLICIES = ("fail", "skip")
#: the config key holding the number of classes, per meta-architecture (others are not checked)
NUM_CLASSES_KEYS = {"GeneralizedRCNN": "MODEL.ROI_HEADS.NUM_CLASSES", "RetinaNet": "MODEL.RETINANET.NUM_CLASSES"}
VOC_DEFAULT_YEAR = 2012

# name -> definition of every dataset this module registered in this process (for idempotent re-registration)
_definitions: Dict[str, Tuple] = {}
# datasets already warned about boxes outside their images (once per dataset and process)
_warned_outside: Set[str] = set()


# ------------------------------------------------------------------------------------------ registration
def _claim(name: str, definition: Tuple) -> bool:
    """Whether ``name`` still needs registering; ``False`` when it already has this same definition."""
    if name in _definitions:
        if _definitions[name] == definition:
            return False
        raise ValueError(
            f"dataset '{name}' is already registered as {_definitions[name]}; cannot redefine it as "
            f"{definition}. Use another name"
        )
    if name in DatasetCatalog.list():
        raise ValueError(
            f"dataset '{name}' is already registered (by detectron2, detnas_d2 or your code); "
            f"pick another name for {definition}"
        )
    return True


def _require(path: str, what: str, entry: str, is_dir: bool) -> None:
    """Fail naming ``path`` (and the dataset ``entry`` needing it) if it is not an existing folder / file."""
    if not (os.path.isdir(path) if is_dir else os.path.isfile(path)):
        raise FileNotFoundError(f"{entry}: {what} {path} does not exist")


def coco_categories(json_file: str) -> List[Dict]:
    """The ``categories`` of a COCO json file, sorted by id (the order detectron2 gives contiguous ids in)."""
    try:
        with open(json_file) as f:
            categories = json.load(f).get("categories")
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{json_file} is not a COCO json file: {err}") from err
    if not categories:
        raise ValueError(f"{json_file} has no 'categories' (COCO format needs [{{'id': 1, 'name': ...}}, ...])")
    return sorted(categories, key=lambda c: c["id"])


def register_coco(name: str, json_file: str, image_dir: str) -> None:
    """Register a COCO-format dataset (as detectron2's ``register_coco_instances``) with its classes known upfront;
    its boxes are clipped to their images (see :func:`clip_boxes_to_images`)."""
    json_file, image_dir = os.path.abspath(json_file), os.path.abspath(image_dir)
    entry = f"dataset '{name}' (coco)"
    _require(json_file, "annotation file", entry, is_dir=False)
    _require(image_dir, "image folder", entry, is_dir=True)
    if not _claim(name, ("coco", json_file, image_dir)):
        return
    categories = coco_categories(json_file)
    DatasetCatalog.register(
        name, lambda: clip_boxes_to_images(load_coco_json(json_file, image_dir, name), name, json_file)
    )
    MetadataCatalog.get(name).set(
        json_file=json_file,
        image_root=image_dir,
        evaluator_type="coco",
        thing_classes=[c["name"] for c in categories],
        thing_dataset_id_to_contiguous_id={c["id"]: i for i, c in enumerate(categories)},
    )
    _definitions[name] = ("coco", json_file, image_dir)


def _clip_annotation(annotation: Dict, width: float, height: float) -> str:
    """Clip the annotation's box to the image in place: "inside", "clipped", "outside" (no overlap) or "empty"
    (zero or negative width or height, e.g. ``[10, 10, 0, 0]`` or ``[30, 30, -10, 5]`` in XYWH)."""
    box = BoxMode.convert(list(annotation["bbox"]), annotation["bbox_mode"], BoxMode.XYXY_ABS)
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return "empty"
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        return "outside"
    clipped = [min(max(x0, 0), width), min(max(y0, 0), height), min(max(x1, 0), width), min(max(y1, 0), height)]
    if clipped == list(box):
        return "inside"
    annotation["bbox"] = BoxMode.convert(clipped, BoxMode.XYXY_ABS, annotation["bbox_mode"])
    return "clipped"


def clip_boxes_to_images(dicts: List[Dict], name: str, json_file: str) -> List[Dict]:
    """Clip boxes partly outside their image to it, drop those entirely outside and those without area; warn once
    per dataset. When any box changed, the evaluation's ground truth is these records, not ``json_file``, so a
    dropped box is dropped everywhere (training, instance counts and evaluation)."""
    counts = {"inside": 0, "clipped": 0, "outside": 0, "empty": 0}
    for record in dicts:
        if "width" not in record or "height" not in record:
            continue
        kept = []
        for annotation in record.get("annotations", []):
            status = _clip_annotation(annotation, record["width"], record["height"])
            counts[status] += 1
            if status in ("inside", "clipped"):
                kept.append(annotation)
        record["annotations"] = kept
    if counts["clipped"] or counts["outside"] or counts["empty"]:
        meta = MetadataCatalog.get(name)
        if meta.get("json_file") == json_file:  # COCOEvaluator converts these records instead
            delattr(meta, "json_file")
        if name not in _warned_outside:
            _warned_outside.add(name)
            logger.warning(
                f"dataset '{name}' ({json_file}): {counts['clipped']} boxes extend past their image and were "
                f"clipped to it; {counts['outside']} boxes lie entirely outside their image and were dropped; "
                f"{counts['empty']} boxes have no area (zero or negative width or height) and were dropped"
            )
    return dicts


def voc_year(dirname: str) -> int:
    """The VOC year of a folder named ``VOC20xx`` (it selects the 2007 11-point metric), else 2012."""
    match = re.fullmatch(r"VOC(20\d\d)", os.path.basename(os.path.normpath(dirname)))
    return int(match.group(1)) if match else VOC_DEFAULT_YEAR


def register_voc(name: str, dirname: str, split: str) -> None:
    """Register a Pascal VOC folder (JPEGImages/, Annotations/, ImageSets/Main/<split>.txt) with the VOC classes."""
    dirname = os.path.abspath(dirname)
    entry = f"dataset '{name}' (voc)"
    _require(dirname, "VOC folder", entry, is_dir=True)
    _require(os.path.join(dirname, "ImageSets", "Main", f"{split}.txt"), "split file", entry, is_dir=False)
    for sub in ("Annotations", "JPEGImages"):
        _require(os.path.join(dirname, sub), "folder", entry, is_dir=True)
    if not _claim(name, ("voc", dirname, split)):
        return
    register_pascal_voc(name, dirname, split, voc_year(dirname))
    MetadataCatalog.get(name).evaluator_type = "pascal_voc"
    _definitions[name] = ("voc", dirname, split)


def register_entries(entries: Sequence, key: str = "DATASETS.REGISTER") -> None:
    """Register every ``[kind, name, a, b]`` entry (see :data:`ENTRY_FORMS`)."""
    for i, entry in enumerate(entries):
        if not (
            isinstance(entry, (list, tuple))
            and len(entry) == 4
            and all(isinstance(x, str) for x in entry)
            and entry[0] in ENTRY_FORMS
        ):
            raise ValueError(f"{key}[{i}] = {entry!r}: expected {' or '.join(ENTRY_FORMS.values())}")
        kind, name, a, b = entry
        (register_coco if kind == "coco" else register_voc)(name, a, b)


# ------------------------------------------------------------------------------------- command line
def add_registration_arguments(parser) -> None:
    """``--register-coco NAME JSON IMAGE_DIR`` and ``--register-voc NAME DIR SPLIT``, both repeatable."""
    parser.add_argument(
        "--register-coco",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "JSON", "IMAGE_DIR"),
        help="register a COCO-format dataset (repeatable)",
    )
    parser.add_argument(
        "--register-voc",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "DIR", "SPLIT"),
        help="register a Pascal VOC folder, e.g. VOC2007 trainval (repeatable)",
    )


def add_command_line_datasets(cfg: CN, args) -> None:
    """Append the ``--register-*`` datasets of ``args`` to ``DATASETS.REGISTER`` (absolute paths, no duplicates)."""
    entries = [list(e) for e in cfg.DATASETS.REGISTER]
    for kind, flag in (("coco", "register_coco"), ("voc", "register_voc")):
        for name, path, last in getattr(args, flag, None) or ():
            last = os.path.abspath(last) if kind == "coco" else last
            entry = [kind, name, os.path.abspath(path), last]
            if entry not in entries:
                entries.append(entry)
    cfg.DATASETS.REGISTER = entries


# ----------------------------------------------------------------------------------- held-out split
def held_out_split(
    dicts: List[Dict], size: int, seed: int, source: str, size_key: str = "DATASETS.SEARCH_HOLDOUT.SIZE"
) -> Tuple[List[Dict], List[Dict]]:
    """``(rest, held_out)``: ``size`` image ids drawn by :func:`seeded_subset_indices` from the sorted ids of
    ``dicts``."""
    ids = sorted(d["image_id"] for d in dicts)
    if size >= len(ids):
        raise ValueError(
            f"{size_key} = {size} holds out every image of '{source}', which has {len(ids)} images: "
            f"the training split would be empty; use a size below {len(ids)}"
        )
    held = {ids[index] for index in seeded_subset_indices(len(ids), size, seed)}
    return [d for d in dicts if d["image_id"] not in held], [d for d in dicts if d["image_id"] in held]


def write_subset_json(json_file: str, image_ids: Set, name: str) -> str:
    """A COCO json of the images ``image_ids`` of ``json_file`` (all categories kept), cached by content."""
    with open(json_file) as f:
        coco = json.load(f)
    subset = dict(
        coco,
        images=[im for im in coco["images"] if im["id"] in image_ids],
        annotations=[a for a in coco.get("annotations", []) if a["image_id"] in image_ids],
    )
    text = json.dumps(subset)
    folder = os.path.join(default_data_root(), "held_out")
    path = os.path.join(folder, f"{name}-{hashlib.sha1(text.encode()).hexdigest()[:16]}.json")
    if not os.path.isfile(path):
        os.makedirs(folder, exist_ok=True)
        atomic_write(path, text)  # concurrent ranks write the same bytes
    return path


def set_json_file(name: str, json_file: str) -> None:
    """Point ``name``'s metadata at ``json_file`` (COCOEvaluator reads ground truth from it)."""
    meta = MetadataCatalog.get(name)
    if meta.get("json_file", json_file) != json_file:
        delattr(meta, "json_file")
    meta.json_file = json_file


# metadata describing the source's own files and evaluation, which a subset must not inherit
_SOURCE_ONLY_METADATA = ("name", "json_file", "dirname", "split", "year", "evaluator_type")


def _inherit_metadata(source: str, name: str) -> None:
    """Copy ``source``'s metadata (classes, category id map, image root) to ``name``; it is scored COCO-style."""
    meta = MetadataCatalog.get(name)
    for key, value in MetadataCatalog.get(source).as_dict().items():
        if key not in _SOURCE_ONLY_METADATA and not hasattr(meta, key):
            setattr(meta, key, value)
    meta.evaluator_type = "coco"


def _load_held_out_part(source: str, size: int, seed: int, name: str, held_out: bool) -> List[Dict]:
    """The dicts of one part of a held-out split (loader of the registered ``name``)."""
    rest, held = held_out_split(DatasetCatalog.get(source), size, seed, source)
    _inherit_metadata(source, name)  # loading the source completes its metadata (e.g. the category id map)
    source_json = MetadataCatalog.get(source).get("json_file")
    if held_out and source_json:  # evaluation of the held-out images against their own ground-truth file
        set_json_file(name, write_subset_json(source_json, {d["image_id"] for d in held}, name))
    return held if held_out else rest


def register_held_out_split(source: str, size: int, seed: int, train_name: str, search_name: str) -> None:
    """Register ``train_name`` (``source`` minus ``size`` held-out images) and ``search_name`` (those images).

    Both inherit ``source``'s metadata; the held-out split of a COCO-json source gets its own json file, so
    COCOEvaluator scores exactly its images (the source's file would count all other images as missed).
    """
    for name, held_out in ((train_name, False), (search_name, True)):
        definition = ("held_out", source, size, seed, "search" if held_out else "rest")
        if not _claim(name, definition):
            continue
        DatasetCatalog.register(
            name, lambda name=name, held_out=held_out: _load_held_out_part(source, size, seed, name, held_out)
        )
        _inherit_metadata(source, name)
        _definitions[name] = definition


def held_out_names(cfg: CN) -> Tuple[str, str, str]:
    """``(source, train_name, search_name)`` of ``DATASETS.SEARCH_HOLDOUT`` with the defaults filled in."""
    holdout = cfg.DATASETS.SEARCH_HOLDOUT
    source = holdout.SOURCE
    if not source:
        if not cfg.DATASETS.TRAIN:
            raise ValueError("DATASETS.SEARCH_HOLDOUT.SIZE > 0 needs DATASETS.SEARCH_HOLDOUT.SOURCE or DATASETS.TRAIN")
        source = cfg.DATASETS.TRAIN[0]
    return source, holdout.TRAIN_NAME or f"{source}_minus_search", holdout.SEARCH_NAME or f"{source}_search"


def resolve_search_holdout(cfg: CN) -> None:
    """Make a ``DATASETS.SEARCH_HOLDOUT`` explicit in an unfrozen config, as DetNAS used COCO: the source's
    place in ``DATASETS.TRAIN`` goes to its rest (search images never train the supernet), and ``SEARCH.DATASET``
    becomes the held-out split: the split asked for wins over a dataset the config names there (with a warning).
    Applying it twice changes nothing."""
    holdout = cfg.DATASETS.SEARCH_HOLDOUT
    if holdout.SIZE <= 0:
        return
    source, train_name, search_name = held_out_names(cfg)
    holdout.SOURCE, holdout.TRAIN_NAME, holdout.SEARCH_NAME = source, train_name, search_name
    cfg.DATASETS.TRAIN = tuple(train_name if name == source else name for name in cfg.DATASETS.TRAIN)
    if "SEARCH" in cfg and cfg.SEARCH.DATASET not in ("", search_name):
        logger.warning(
            f"DATASETS.SEARCH_HOLDOUT.SIZE = {holdout.SIZE} wins over SEARCH.DATASET = "
            f"'{cfg.SEARCH.DATASET}': the search scores on the held-out split '{search_name}' (set "
            f"DATASETS.SEARCH_HOLDOUT.SIZE 0 to score on '{cfg.SEARCH.DATASET}')"
        )
    if "SEARCH" in cfg:
        cfg.SEARCH.DATASET = search_name
    logger.info(
        f"held out {holdout.SIZE} images of '{source}' (seed {holdout.SEED}) as '{search_name}'; "
        f"DATASETS.TRAIN = {cfg.DATASETS.TRAIN}"
    )


# ------------------------------------------------------------------------------------------- checks
def check_num_classes(cfg: CN, names_by_key: Dict[str, Sequence[str]]) -> None:
    """The class count of every named dataset with known classes must equal the model's NUM_CLASSES key."""
    key = NUM_CLASSES_KEYS.get(cfg.MODEL.META_ARCHITECTURE)
    if key is None:
        return
    expected = functools.reduce(getattr, key.split("."), cfg)
    for config_key, names in names_by_key.items():
        for name in names:
            meta = MetadataCatalog.get(name)
            classes = meta.get("thing_classes")
            if classes is None or len(classes) == expected:
                continue
            id_map = meta.get("thing_dataset_id_to_contiguous_id")
            ids = f"category ids {sorted(id_map)}" if id_map else "classes"
            raise ValueError(
                f"dataset '{name}' ({config_key}) has {len(classes)} categories ({ids}: "
                f"{', '.join(map(str, classes[:10]))}{' ...' if len(classes) > 10 else ''}) but {key} "
                f"is {expected}; set {key} {len(classes)}"
            )


def check_bad_image_policy(policy: str) -> None:
    """``DATALOADER.ON_BAD_IMAGE`` must be one of :data:`BAD_IMAGE_POLICIES`."""
    if policy not in BAD_IMAGE_POLICIES:
        raise ValueError(f"DATALOADER.ON_BAD_IMAGE = {policy!r}; allowed: {', '.join(BAD_IMAGE_POLICIES)}")


# ------------------------------------------------------------------------------------ bad images
class UnreadableImageError(ValueError):
    """An image of a dataset could not be read or decoded."""


class BadImageGuard:
    """A dataset mapper wrapper: an image that fails to load raises :class:`UnreadableImageError` naming the file,
    or, with policy "skip" in training, is skipped with a warning (detectron2's ``MapDataset`` then draws
    another image). Inference always fails: skipping images would bias the reported AP.

    Checking lazily here, in the data path, costs nothing extra (a decode pass over COCO at setup would).
    """

    def __init__(self, mapper, policy: str = "fail", is_train: bool = True):
        check_bad_image_policy(policy)
        self.mapper = mapper
        self.skip = policy == "skip" and is_train
        self._warned: Set[str] = set()

    def __call__(self, dataset_dict: Dict):
        try:
            return self.mapper(dataset_dict)
        except OSError as err:  # missing, truncated or undecodable files (PIL, OpenCV and PathManager errors)
            file_name = dataset_dict.get("file_name")
            if not self.skip:
                raise UnreadableImageError(
                    f"cannot read image {file_name}: {err} (DATALOADER.ON_BAD_IMAGE 'skip' "
                    "skips such images in training)"
                ) from err
            if file_name not in self._warned:
                self._warned.add(file_name)
                logger.warning(f"skipping unreadable image {file_name}: {err}")
            return None


def guard_bad_images(cfg: CN, mapper, is_train: bool) -> BadImageGuard:
    """``mapper`` wrapped per ``DATALOADER.ON_BAD_IMAGE``."""
    return BadImageGuard(mapper, cfg.DATALOADER.ON_BAD_IMAGE, is_train)
