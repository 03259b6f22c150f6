"""The 25 operations of detection AutoAugment (Zoph et al. 2019) as detectron2 Transforms/Augmentations.

Transforms are deterministic (all arguments fixed); each op's Augmentation draws the random parts (whether it
fires, the sign, hole centres, which boxes) and returns a Transform, so ops compose with detectron2's
``T.AugInput`` / ``T.AugmentationList`` like any built-in augmentation. Images are uint8 HxWx3 at their
original resolution, boxes float XYXY_ABS. Semantics follow the reference code (tensorflow/tpu
``models/official/detection/utils/autoaugment_utils.py``) for Zoph et al., ECCV 2020.

Box handling of the geometric ops (``box_mode``):

* ``"drop"`` (default): the four corners are mapped, the enclosing box is clipped to the canvas, and a box
  whose visible area became zero stays exactly empty through later ops. Downstream, detectron2's
  ``filter_empty_instances`` (or :func:`nonempty_boxes`) removes it with its class and other fields.
* ``"reference"``: the TF reference's integer-pixel box math, including its 5 % edge slivers that keep
  boxes pushed out of the image alive.

Bad boxes reaching the box-aware ops (BBox_Cutout, ``*_Only_BBoxes``): an inverted box (x1 < x0 or y1 < y0)
covers no pixel and is skipped, as detectron2 drops empty boxes; a NaN or infinite coordinate is corrupt data
and raises a ValueError naming the op and the box.
"""

import inspect
import math
from abc import abstractmethod
from typing import Tuple

import cv2
import numpy as np
from detectron2.data.transforms import Augmentation, HFlipTransform, NoOpTransform, Transform

MAX_LEVEL = 10  # levels run 0..MAX_LEVEL
FILL_VALUE = 128  # gray written into uncovered pixels and cutout holes
TRANSLATE_CONST = 250  # image translation in pixels at level 10
TRANSLATE_BBOX_CONST = 120  # in-box translation in pixels at level 10
CUTOUT_CONST = 100  # Cutout half-size in pixels at level 10
CUTOUT_BBOX_CONST = 50  # Cutout_Only_BBoxes half-size in pixels at level 10
CUTOUT_MAX_PAD_FRACTION = 0.75  # BBox_Cutout hole fraction of the box at level 10
BBOX_ONLY_PROB_DIVISOR = 3.0  # per-box probability of a bbox-only op = prob / 3
REFERENCE_SLIVER = 0.05  # the reference widens zero-extent boxes to 5 % of the image side
BOX_MODES = ("drop", "reference")
IMAGE_FORMATS = ("RGB", "BGR")
_GRAY_WEIGHTS_RGB = np.array([2989, 5870, 1140], dtype=np.float64)  # 0.2989, 0.5870, 0.1140 times 1e4


# ----------------------------------------------------------------------------------------------------
# Level -> argument (the reference code's formulas, so e.g. int(0.6 * 100) = 60)
# ----------------------------------------------------------------------------------------------------
def _level_fraction(level: int) -> float:
    return level / MAX_LEVEL


def rotate_degrees(level: int) -> float:
    """Unsigned rotation angle: 3 degrees per level."""
    return _level_fraction(level) * 30.0


def shear_coefficient(level: int) -> float:
    """Unsigned shear coefficient: 0.03 per level."""
    return _level_fraction(level) * 0.3


def translate_pixels(level: int, translate_const: int) -> float:
    """Unsigned translation in pixels: ``translate_const`` at level 10."""
    return _level_fraction(level) * float(translate_const)


def enhance_factor(level: int) -> float:
    """Blend factor of Color/Contrast/Brightness/Sharpness: 0.1 at level 0 to 1.9 at level 10."""
    return _level_fraction(level) * 1.8 + 0.1


def cutout_pad_size(level: int, cutout_const: int) -> int:
    """Cutout half-size in pixels (the hole side is twice this)."""
    return int(_level_fraction(level) * cutout_const)


def bbox_cutout_fraction(level: int) -> float:
    """BBox_Cutout hole size as a fraction of the chosen box's height and width."""
    return _level_fraction(level) * CUTOUT_MAX_PAD_FRACTION


def solarize_threshold(level: int) -> int:
    """Pixels at or above this value are inverted (256 = no-op)."""
    return int(_level_fraction(level) * 256)


def solarize_addition(level: int) -> int:
    """Value added to pixels below 128 by SolarizeAdd."""
    return int(_level_fraction(level) * 110)


def posterize_bits(level: int) -> int:
    """Number of high bits Posterize keeps (0 behaves like 1, as in TF)."""
    return int(_level_fraction(level) * 4)


# ----------------------------------------------------------------------------------------------------
# Argument checks shared with policy parsing
# ----------------------------------------------------------------------------------------------------
def check_probability(prob) -> float:
    """Return ``prob`` as float or raise ValueError unless it is a number in [0, 1]."""
    if isinstance(prob, bool) or not isinstance(prob, (int, float, np.integer, np.floating)):
        raise ValueError(f"probability must be a number in [0, 1], got {prob!r}")
    if not 0.0 <= float(prob) <= 1.0:
        raise ValueError(f"probability {prob!r} is outside [0, 1]")
    return float(prob)


def check_level(level) -> int:
    """Return ``level`` as int or raise ValueError unless it is an integer in 0..10."""
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)):
        raise ValueError(f"level must be an integer in 0..{MAX_LEVEL}, got {level!r}")
    if not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"level {level!r} is outside 0..{MAX_LEVEL}")
    return int(level)


def check_box_mode(box_mode: str) -> str:
    """Raise ValueError unless ``box_mode`` is one of :data:`BOX_MODES`."""
    if box_mode not in BOX_MODES:
        raise ValueError(f"box_mode must be one of {BOX_MODES}, got {box_mode!r}")
    return box_mode


def check_image_format(image_format: str) -> str:
    """Raise ValueError unless the channel order is RGB or BGR (needed by the gray conversion)."""
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"AutoAugment needs image_format in {IMAGE_FORMATS}, got {image_format!r}")
    return image_format


def _check_image(image) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image)
        raise ValueError(f"AutoAugment ops need a uint8 HxWx3 image, got {got}")


# ----------------------------------------------------------------------------------------------------
# Pixel helpers
# ----------------------------------------------------------------------------------------------------
def nonempty_boxes(boxes: np.ndarray) -> np.ndarray:
    """Boolean mask of boxes with positive width and height (the survivors in ``"drop"`` mode)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def _as_boxes(boxes: np.ndarray | None) -> np.ndarray:
    if boxes is None:
        return np.zeros((0, 4), dtype=np.float64)
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _policy_boxes(boxes: np.ndarray | None, box_mode: str, op_name: str) -> np.ndarray:
    """Boxes that box-aware ops may pick: the non-empty ones in drop mode; in reference mode also zero-extent
    ones (TF slivers), never inverted ones (they cover no pixel). A NaN or infinite coordinate is an error."""
    boxes = _as_boxes(boxes)
    finite = np.isfinite(boxes).all(axis=1)
    if not finite.all():
        raise ValueError(
            f"AutoAugment op {op_name}: box {boxes[~finite][0].tolist()} has a NaN or infinite "
            "coordinate; fix or drop that annotation (boxes are XYXY_ABS pixels)"
        )
    if box_mode != "reference":
        return boxes[nonempty_boxes(boxes)]
    return boxes[(boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])]


def _box_pixels(box: np.ndarray, height: int, width: int) -> Tuple[int, int, int, int]:
    """Reference pixel indices of a box, ``(min_y, min_x, max_y, max_x)`` by truncation, kept on the image."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return (min(max(y0, 0), height), min(max(x0, 0), width), min(max(y1, 0), height), min(max(x1, 0), width))


def _blend(degenerate, image: np.ndarray, factor: float) -> np.ndarray:
    """``degenerate + factor * (image - degenerate)`` in float32; truncate inside (0, 1), clip outside.

    ``degenerate`` is an array of the image's shape or a scalar.
    """
    if factor == 0.0:
        return np.broadcast_to(np.asarray(degenerate, dtype=np.float32), image.shape).astype(np.uint8)
    if factor == 1.0:
        return image.copy()
    degenerate = np.asarray(degenerate, dtype=np.float32)
    blended = image.astype(np.float32)
    blended -= degenerate
    blended *= np.float32(factor)
    blended += degenerate
    if not 0.0 < factor < 1.0:
        np.clip(blended, 0.0, 255.0, out=blended)
    return blended.astype(np.uint8)


def _grayscale(image: np.ndarray, image_format: str) -> np.ndarray:
    """uint8 luma as the reference computes it: floor(sum(w_c * p_c) * 255.5 / 255), weights .2989/.5870/.1140.

    Evaluated exactly: the integer sum S = sum(w_c * 1e4 * p_c) times 511 is exact in float64 and the one
    correctly rounded division by 5.1e6 cannot cross an integer, so the floor is the exact one.
    """
    weights = _GRAY_WEIGHTS_RGB if image_format == "RGB" else _GRAY_WEIGHTS_RGB[::-1]
    weighted = cv2.transform(image.astype(np.float64), weights[None, :].astype(np.float64))
    return np.floor(weighted * 511 / 5_100_000).astype(np.uint8).reshape(image.shape[:2])


def _apply_channel_luts(image: np.ndarray, luts: np.ndarray) -> np.ndarray:
    """Map each channel c of ``image`` through its 256-entry table ``luts[c]``."""
    return cv2.LUT(np.ascontiguousarray(image), np.ascontiguousarray(luts.T.reshape(256, 1, 3).astype(np.uint8)))


def _equalize_lut(histogram: np.ndarray) -> np.ndarray:
    """PIL-style equalization table of one channel (as the reference code); identity when the step is 0."""
    nonzero = histogram[histogram > 0]
    step = (int(nonzero.sum()) - int(nonzero[-1])) // 255
    if step == 0:
        return np.arange(256)
    lut = (np.cumsum(histogram) + step // 2) // step
    return np.clip(np.concatenate([[0], lut[:-1]]), 0, 255)


def _warp_affine(image: np.ndarray, matrix: np.ndarray, fill: int) -> np.ndarray:
    """Nearest-neighbour warp on the same canvas by ``matrix`` (2x3, continuous coords, input -> output)."""
    linear, shift = matrix[:, :2], matrix[:, 2]
    # continuous coordinate = pixel index + 0.5; OpenCV works on pixel indices
    index_shift = linear @ np.array([0.5, 0.5]) + shift - 0.5
    inverse_linear = np.linalg.inv(linear)
    inverse = np.hstack([inverse_linear, (-inverse_linear @ index_shift)[:, None]])
    height, width = image.shape[:2]
    return cv2.warpAffine(
        np.ascontiguousarray(image),
        inverse,
        (width, height),
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(fill, fill, fill, fill),
    )


def _reference_clip_and_sliver(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reference steps 4-5: clip to the image, then widen zero-extent sides to the 5 % edge slivers."""
    out = boxes.copy()
    out[:, 0::2] = np.clip(out[:, 0::2], 0, width)
    out[:, 1::2] = np.clip(out[:, 1::2], 0, height)
    for low, high, size in ((0, 2, width), (1, 3, height)):
        flat = out[:, high] == out[:, low]
        out[flat, high] = np.maximum(out[flat, high], REFERENCE_SLIVER * size)
        out[flat, low] = np.minimum(out[flat, low], (1.0 - REFERENCE_SLIVER) * size)
    return out


# ----------------------------------------------------------------------------------------------------
# Deterministic transforms
# ----------------------------------------------------------------------------------------------------
class PhotometricTransform(Transform):
    """Base of pixel-only transforms: coordinates, boxes and segmentation pass through unchanged."""

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation


class AutoContrastTransform(PhotometricTransform):
    """Per channel, stretch [min, max] linearly to [0, 255] (truncating); flat channels are kept."""

    def __init__(self):
        super().__init__()

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        values = np.arange(256)
        luts = np.empty((3, 256), dtype=np.int64)
        pixels = img.reshape(-1, 3)
        for channel, low, high in zip(range(3), pixels.min(axis=0).tolist(), pixels.max(axis=0).tolist()):
            luts[channel] = values if high == low else np.clip((values - low) * 255 // (high - low), 0, 255)
        return _apply_channel_luts(img, luts)


class EqualizeTransform(PhotometricTransform):
    """Per-channel PIL-style histogram equalization."""

    def __init__(self):
        super().__init__()

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        luts = np.empty((3, 256), dtype=np.int64)
        for channel in range(3):
            histogram = cv2.calcHist([np.ascontiguousarray(img)], [channel], None, [256], [0, 256])
            luts[channel] = _equalize_lut(histogram.ravel().astype(np.int64))
        return _apply_channel_luts(img, luts)


class PosterizeTransform(PhotometricTransform):
    """Keep the top ``bits`` bits; like TF the shift is capped at 7, so bits=0 gives a 1-bit image (0/128)."""

    def __init__(self, bits: int):
        super().__init__()
        if not 0 <= bits <= 8:
            raise ValueError(f"Posterize bits must be in 0..8, got {bits!r}")
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        shift = min(8 - self.bits, 7)
        lut = (np.arange(256) >> shift) << shift
        return _apply_channel_luts(img, np.stack([lut] * 3))


class SolarizeTransform(PhotometricTransform):
    """Invert pixels at or above ``threshold`` (p -> 255 - p)."""

    def __init__(self, threshold: int):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        values = np.arange(256)
        lut = np.where(values < self.threshold, values, 255 - values)
        return _apply_channel_luts(img, np.stack([lut] * 3))


class SolarizeAddTransform(PhotometricTransform):
    """Add ``addition`` (capped at 255) to pixels below ``threshold``; others are untouched, nothing inverts."""

    def __init__(self, addition: int, threshold: int = 128):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        values = np.arange(256)
        lut = np.where(values < self.threshold, np.clip(values + self.addition, 0, 255), values)
        return _apply_channel_luts(img, np.stack([lut] * 3))


class ColorTransform(PhotometricTransform):
    """Blend toward the grayscale image by ``factor`` (0 = gray, 1 = unchanged, >1 = more saturated)."""

    def __init__(self, factor: float, image_format: str = "RGB"):
        super().__init__()
        check_image_format(image_format)
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        gray = _grayscale(img, self.image_format)
        return _blend(cv2.merge([gray, gray, gray]), img, self.factor)


class ContrastTransform(PhotometricTransform):
    """Blend toward a constant gray image by ``factor``.

    The gray level is the mean luma rounded to an integer (PIL's Contrast). ``reference_contrast=True``
    reproduces the TF reference instead: level = min(H * W / 256, 255), i.e. white for images of 65,536
    pixels or more (tensorflow/models#8328).
    """

    def __init__(self, factor: float, image_format: str = "RGB", reference_contrast: bool = False):
        super().__init__()
        check_image_format(image_format)
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if self.reference_contrast:
            gray_level = int(min(img.shape[0] * img.shape[1] / 256.0, 255.0))
        else:
            gray_level = int(_grayscale(img, self.image_format).mean() + 0.5)
        return _blend(np.float32(gray_level), img, self.factor)


class BrightnessTransform(PhotometricTransform):
    """Blend toward black, i.e. multiply by ``factor`` (truncating, clipped at 255)."""

    def __init__(self, factor: float):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return _blend(np.float32(0.0), img, self.factor)


class SharpnessTransform(PhotometricTransform):
    """Blend toward the PIL SMOOTH image (3x3 kernel [[1,1,1],[1,5,1],[1,1,1]]/13, 1-pixel border kept)."""

    _KERNEL = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float32)

    def __init__(self, factor: float):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if img.shape[0] < 3 or img.shape[1] < 3:
            return img.copy()  # all border: the smoothed image equals the input
        # exact integer sums (<= 13 * 255), truncated quotient like the reference; the border is kept
        sums = cv2.filter2D(np.ascontiguousarray(img), cv2.CV_16S, self._KERNEL, borderType=cv2.BORDER_CONSTANT)
        smooth = (sums // 13).astype(np.uint8)
        smooth[[0, -1]] = img[[0, -1]]
        smooth[:, [0, -1]] = img[:, [0, -1]]
        return _blend(smooth, img, self.factor)


class CutoutTransform(PhotometricTransform):
    """Fill rows ``[y0, y1)`` and columns ``[x0, x1)`` with ``fill``; boxes are not changed."""

    def __init__(self, y0: int, y1: int, x0: int, x1: int, fill: int = FILL_VALUE):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        out = img.copy()
        out[self.y0 : self.y1, self.x0 : self.x1] = self.fill
        return out


class CanvasAffineTransform(Transform):
    """Affine warp on a fixed HxW canvas (nearest, uncovered pixels = 128) that also maps boxes.

    Subclasses set ``self.matrix`` (2x3, continuous coordinates, input -> output) and implement the TF
    reference's integer box math in ``_reference_boxes``. Boxes are clipped to the canvas after every op
    (content pushed out is lost, so a later op cannot bring it back); see the module doc for ``box_mode``.
    Segmentation is warped with fill 0.
    """

    height: int
    width: int
    box_mode: str
    matrix: np.ndarray

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return _warp_affine(img, self.matrix, FILL_VALUE)

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return _warp_affine(segmentation, self.matrix, 0)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords = np.asarray(coords, dtype=np.float64)
        return coords @ self.matrix[:, :2].T + self.matrix[:, 2]

    def apply_box(self, box: np.ndarray) -> np.ndarray:
        box = _as_boxes(box)
        if self.box_mode == "reference":
            return self._reference_boxes(box)
        out = super().apply_box(box)  # enclosing box of the four mapped corners
        out[:, 0::2] = np.clip(out[:, 0::2], 0, self.width)
        out[:, 1::2] = np.clip(out[:, 1::2], 0, self.height)
        vanished = ~nonempty_boxes(box)
        out[vanished, 2:] = out[vanished, :2]  # a box that already lost all area stays empty
        return out

    @abstractmethod
    def _reference_boxes(self, box: np.ndarray) -> np.ndarray:
        """The TF reference's box result (integer pixels, clip, 5 % slivers) for XYXY_ABS ``box``."""


class RotateTransform(CanvasAffineTransform):
    """Rotate by ``angle`` degrees about the canvas centre, counter-clockwise on screen for angle > 0."""

    def __init__(self, angle: float, height: int, width: int, box_mode: str = "drop"):
        super().__init__()
        self._set_attributes(locals())
        check_box_mode(box_mode)
        radians = math.radians(angle)
        cos, sin = math.cos(radians), math.sin(radians)
        cx, cy = width / 2.0, height / 2.0
        self.matrix = np.array(
            [[cos, sin, cx - cos * cx - sin * cy], [-sin, cos, cy + sin * cx - cos * cy]], dtype=np.float64
        )

    def _reference_boxes(self, box: np.ndarray) -> np.ndarray:
        # TF: corners relative to the centre with y pointing up, truncated to ints, rotated, truncated again
        half_h, half_w = self.height / 2.0, self.width / 2.0
        ys = -np.trunc(box[:, [1, 3]] - half_h)
        xs = np.trunc(box[:, [0, 2]] - half_w)
        corner_y, corner_x = ys[:, [0, 0, 1, 1]], xs[:, [0, 1, 0, 1]]
        radians = math.radians(self.angle)
        cos, sin = math.cos(radians), math.sin(radians)
        new_y = np.trunc(cos * corner_y + sin * corner_x)
        new_x = np.trunc(-sin * corner_y + cos * corner_x)
        out = np.stack(
            [new_x.min(1) + half_w, half_h - new_y.max(1), new_x.max(1) + half_w, half_h - new_y.min(1)], axis=1
        )
        return _reference_clip_and_sliver(out, self.height, self.width)


class ShearTransform(CanvasAffineTransform):
    """Shear about the top-left pixel: axis "x": x_out = x_in - s * y; axis "y": y_out = y_in - s * x.

    (Pixel-index coordinates as in TF; in continuous coordinates the origin is the top-left pixel centre.)
    """

    def __init__(self, coefficient: float, axis: str, height: int, width: int, box_mode: str = "drop"):
        super().__init__()
        self._set_attributes(locals())
        check_box_mode(box_mode)
        s = coefficient
        if axis == "x":
            self.matrix = np.array([[1.0, -s, 0.5 * s], [0.0, 1.0, 0.0]])
        elif axis == "y":
            self.matrix = np.array([[1.0, 0.0, 0.0], [-s, 1.0, 0.5 * s]])
        else:
            raise ValueError(f"shear axis must be 'x' or 'y', got {axis!r}")

    def _reference_boxes(self, box: np.ndarray) -> np.ndarray:
        ys, xs = np.trunc(box[:, [1, 3]]), np.trunc(box[:, [0, 2]])
        corner_y, corner_x = ys[:, [0, 0, 1, 1]], xs[:, [0, 1, 0, 1]]
        if self.axis == "x":
            corner_x = np.trunc(corner_x - self.coefficient * corner_y)
        else:
            corner_y = np.trunc(corner_y - self.coefficient * corner_x)
        out = np.stack([corner_x.min(1), corner_y.min(1), corner_x.max(1), corner_y.max(1)], axis=1)
        return _reference_clip_and_sliver(out, self.height, self.width)


class TranslateTransform(CanvasAffineTransform):
    """Move content by ``-pixels`` along ``axis`` ("x" or "y"): positive pixels move it left / up."""

    def __init__(self, pixels: float, axis: str, height: int, width: int, box_mode: str = "drop"):
        super().__init__()
        self._set_attributes(locals())
        check_box_mode(box_mode)
        if axis == "x":
            self.matrix = np.array([[1.0, 0.0, -pixels], [0.0, 1.0, 0.0]])
        elif axis == "y":
            self.matrix = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, -pixels]])
        else:
            raise ValueError(f"translate axis must be 'x' or 'y', got {axis!r}")

    def _reference_boxes(self, box: np.ndarray) -> np.ndarray:
        out = np.trunc(box)
        shift = int(self.pixels)
        low, high, size = (0, 2, self.width) if self.axis == "x" else (1, 3, self.height)
        out[:, low] = np.maximum(0, out[:, low] - shift)
        out[:, high] = np.minimum(size, out[:, high] - shift)
        return _reference_clip_and_sliver(out, self.height, self.width)


class BBoxOnlyTransform(Transform):
    """Apply ``crop_transforms[i]`` to the pixels of ``regions[i] = (y0, y1, x0, x1)`` (half-open), in order.

    Each crop is read from the image as modified by the earlier regions (overlaps compound, as in the
    reference). Boxes, coordinates and segmentation are unchanged.
    """

    def __init__(self, regions: list, crop_transforms: list):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        out = img.copy()
        for (y0, y1, x0, x1), transform in zip(self.regions, self.crop_transforms):
            out[y0:y1, x0:x1] = transform.apply_image(out[y0:y1, x0:x1])
        return out

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation


# ----------------------------------------------------------------------------------------------------
# Augmentations (one policy entry each)
# ----------------------------------------------------------------------------------------------------
def _random_sign() -> float:
    return 1.0 if np.random.rand() < 0.5 else -1.0


class AutoAugmentOp(Augmentation):
    """Base of the ops: one policy entry ``(name, prob, level)`` that fires with probability ``prob``.

    Args:
        prob: probability that the op fires on an image, in [0, 1].
        level: magnitude, an integer in 0..10 (mapped to the op's argument by the reference code's formulas).
    """

    name = ""  # the reference's op name, e.g. "Rotate_BBox"

    def __init__(self, prob: float, level: int):
        super().__init__()
        self.prob = check_probability(prob)
        self.level = check_level(level)

    def get_transform(self, image: np.ndarray, boxes: np.ndarray | None) -> Transform:
        _check_image(image)
        if not np.random.rand() < self.prob:
            return NoOpTransform()
        return self.sample_transform(image, boxes)

    def sample_transform(self, image: np.ndarray, boxes: np.ndarray | None) -> Transform:
        """The transform applied when the op fires."""
        raise NotImplementedError


class CanvasOp(AutoAugmentOp):
    """An op defined on a whole canvas; the bbox-only ops reuse it on box crops."""

    def sample_argument(self):
        """Random per-application argument shared by all crops (e.g. the signed angle); None if none."""
        return None

    def canvas_transform(self, argument, height: int, width: int) -> Transform:
        """Transform of one ``height`` x ``width`` canvas (may draw per-canvas randomness, e.g. a hole centre)."""
        raise NotImplementedError

    def sample_transform(self, image, boxes):
        return self.canvas_transform(self.sample_argument(), image.shape[0], image.shape[1])


class AutoContrast(CanvasOp):
    """Per-channel min/max stretch to [0, 255]; level unused."""

    name = "AutoContrast"

    def canvas_transform(self, argument, height, width):
        return AutoContrastTransform()


class Equalize(CanvasOp):
    """Per-channel histogram equalization; level unused."""

    name = "Equalize"

    def canvas_transform(self, argument, height, width):
        return EqualizeTransform()


class Posterize(CanvasOp):
    """Keep int(0.4 * level) high bits."""

    name = "Posterize"

    def canvas_transform(self, argument, height, width):
        return PosterizeTransform(posterize_bits(self.level))


class Solarize(CanvasOp):
    """Invert pixels >= int(25.6 * level)."""

    name = "Solarize"

    def canvas_transform(self, argument, height, width):
        return SolarizeTransform(solarize_threshold(self.level))


class SolarizeAdd(CanvasOp):
    """Add int(11 * level) to pixels below 128."""

    name = "SolarizeAdd"

    def canvas_transform(self, argument, height, width):
        return SolarizeAddTransform(solarize_addition(self.level))


class Color(CanvasOp):
    """Saturation blend with factor 0.18 * level + 0.1."""

    name = "Color"

    def __init__(self, prob: float, level: int, *, image_format: str = "RGB"):
        super().__init__(prob, level)
        self.image_format = check_image_format(image_format)

    def canvas_transform(self, argument, height, width):
        return ColorTransform(enhance_factor(self.level), self.image_format)


class Contrast(CanvasOp):
    """Contrast blend with factor 0.18 * level + 0.1 (true mean unless ``reference_contrast``)."""

    name = "Contrast"

    def __init__(self, prob: float, level: int, *, image_format: str = "RGB", reference_contrast: bool = False):
        super().__init__(prob, level)
        self.image_format = check_image_format(image_format)
        self.reference_contrast = bool(reference_contrast)

    def canvas_transform(self, argument, height, width):
        return ContrastTransform(enhance_factor(self.level), self.image_format, self.reference_contrast)


class Brightness(CanvasOp):
    """Multiply by 0.18 * level + 0.1."""

    name = "Brightness"

    def canvas_transform(self, argument, height, width):
        return BrightnessTransform(enhance_factor(self.level))


class Sharpness(CanvasOp):
    """Sharpness blend with factor 0.18 * level + 0.1."""

    name = "Sharpness"

    def canvas_transform(self, argument, height, width):
        return SharpnessTransform(enhance_factor(self.level))


class Cutout(CanvasOp):
    """Gray square of side 2 * int(level / 10 * cutout_const) centred on a uniform random pixel, clipped."""

    name = "Cutout"

    def __init__(self, prob: float, level: int, *, cutout_const: int = CUTOUT_CONST):
        super().__init__(prob, level)
        self.cutout_const = cutout_const

    def canvas_transform(self, argument, height, width):
        pad = cutout_pad_size(self.level, self.cutout_const)
        center_y, center_x = np.random.randint(height), np.random.randint(width)
        return CutoutTransform(
            max(0, center_y - pad), min(height, center_y + pad), max(0, center_x - pad), min(width, center_x + pad)
        )


class BBoxCutout(AutoAugmentOp):
    """Gray hole in one random box: centre uniform in the box, half-sizes int(frac * (box side + 1) / 2)."""

    name = "BBox_Cutout"

    def __init__(self, prob: float, level: int, *, box_mode: str = "drop"):
        super().__init__(prob, level)
        self.box_mode = check_box_mode(box_mode)

    def sample_transform(self, image, boxes):
        boxes = _policy_boxes(boxes, self.box_mode, self.name)
        if len(boxes) == 0:
            return NoOpTransform()
        height, width = image.shape[:2]
        min_y, min_x, max_y, max_x = _box_pixels(boxes[np.random.randint(len(boxes))], height, width)
        fraction = bbox_cutout_fraction(self.level)
        pad_y = int(fraction * ((max_y - min_y + 1) / 2))
        pad_x = int(fraction * ((max_x - min_x + 1) / 2))
        center_y = np.random.randint(min_y, max_y + 1)
        center_x = np.random.randint(min_x, max_x + 1)
        return CutoutTransform(
            max(0, center_y - pad_y),
            min(height, center_y + pad_y),
            max(0, center_x - pad_x),
            min(width, center_x + pad_x),
        )


class _GeometricOp(CanvasOp):
    """Shared constructor of the box-moving ops; the sign of the argument is random per application."""

    def __init__(self, prob: float, level: int, *, box_mode: str = "drop"):
        super().__init__(prob, level)
        self.box_mode = check_box_mode(box_mode)


class RotateBBox(_GeometricOp):
    """Rotate image and boxes by +-3 * level degrees about the centre."""

    name = "Rotate_BBox"

    def sample_argument(self):
        return _random_sign() * rotate_degrees(self.level)

    def canvas_transform(self, argument, height, width):
        return RotateTransform(argument, height, width, self.box_mode)


class ShearXBBox(_GeometricOp):
    """Shear along x by +-0.03 * level."""

    name = "ShearX_BBox"
    axis = "x"

    def sample_argument(self):
        return _random_sign() * shear_coefficient(self.level)

    def canvas_transform(self, argument, height, width):
        return ShearTransform(argument, self.axis, height, width, self.box_mode)


class ShearYBBox(ShearXBBox):
    """Shear along y by +-0.03 * level."""

    name = "ShearY_BBox"
    axis = "y"


class TranslateXBBox(_GeometricOp):
    """Translate along x by +-level / 10 * translate_const pixels."""

    name = "TranslateX_BBox"
    axis = "x"

    def __init__(self, prob: float, level: int, *, box_mode: str = "drop", translate_const: int = TRANSLATE_CONST):
        super().__init__(prob, level, box_mode=box_mode)
        self.translate_const = translate_const

    def sample_argument(self):
        return _random_sign() * translate_pixels(self.level, self.translate_const)

    def canvas_transform(self, argument, height, width):
        return TranslateTransform(argument, self.axis, height, width, self.box_mode)


class TranslateYBBox(TranslateXBBox):
    """Translate along y by +-level / 10 * translate_const pixels."""

    name = "TranslateY_BBox"
    axis = "y"


class _HorizontalFlip(CanvasOp):
    """Left-right mirror of a canvas (used on box crops by Flip_Only_BBoxes)."""

    def canvas_transform(self, argument, height, width):
        return HFlipTransform(width)


class BBoxOnlyOp(AutoAugmentOp):
    """Apply a canvas op inside boxes: the outer probability is 1, each box fires with ``prob / 3``.

    Boxes are visited in random order and share one argument (e.g. the signed angle); the crop of box
    ``[x0, y0, x1, y1]`` is rows int(y0)..min(int(y1), H-1) and columns likewise, inclusive.
    """

    def __init__(self, prob: float, level: int, *, box_mode: str = "drop"):
        super().__init__(prob, level)
        self.box_mode = check_box_mode(box_mode)

    def crop_op(self) -> CanvasOp:
        """The canvas op applied to each chosen crop."""
        raise NotImplementedError

    def get_transform(self, image: np.ndarray, boxes: np.ndarray | None) -> Transform:
        _check_image(image)
        boxes = _policy_boxes(boxes, self.box_mode, self.name)
        if len(boxes) == 0:
            return NoOpTransform()
        crop_op = self.crop_op()
        argument = crop_op.sample_argument()
        box_prob = self.prob / BBOX_ONLY_PROB_DIVISOR
        height, width = image.shape[:2]
        regions, crop_transforms = [], []
        for index in np.random.permutation(len(boxes)):
            if not np.random.rand() < box_prob:
                continue
            min_y, min_x, max_y, max_x = _box_pixels(boxes[index], height, width)
            y1, x1 = min(max_y, height - 1) + 1, min(max_x, width - 1) + 1
            if y1 <= min_y or x1 <= min_x:
                continue
            regions.append((min_y, y1, min_x, x1))
            crop_transforms.append(crop_op.canvas_transform(argument, y1 - min_y, x1 - min_x))
        if not regions:
            return NoOpTransform()
        return BBoxOnlyTransform(regions, crop_transforms)


class RotateOnlyBBoxes(BBoxOnlyOp):
    """Rotate box crops about their centres by +-3 * level degrees."""

    name = "Rotate_Only_BBoxes"

    def crop_op(self):
        return RotateBBox(1.0, self.level)


class ShearXOnlyBBoxes(BBoxOnlyOp):
    """Shear box crops along x (about the crop's top-left pixel)."""

    name = "ShearX_Only_BBoxes"

    def crop_op(self):
        return ShearXBBox(1.0, self.level)


class ShearYOnlyBBoxes(BBoxOnlyOp):
    """Shear box crops along y (about the crop's top-left pixel)."""

    name = "ShearY_Only_BBoxes"

    def crop_op(self):
        return ShearYBBox(1.0, self.level)


class TranslateXOnlyBBoxes(BBoxOnlyOp):
    """Translate content inside box crops along x by +-12 * level pixels."""

    name = "TranslateX_Only_BBoxes"

    def crop_op(self):
        return TranslateXBBox(1.0, self.level, translate_const=TRANSLATE_BBOX_CONST)


class TranslateYOnlyBBoxes(BBoxOnlyOp):
    """Translate content inside box crops along y by +-12 * level pixels."""

    name = "TranslateY_Only_BBoxes"

    def crop_op(self):
        return TranslateYBBox(1.0, self.level, translate_const=TRANSLATE_BBOX_CONST)


class FlipOnlyBBoxes(BBoxOnlyOp):
    """Mirror box crops left-right; level unused."""

    name = "Flip_Only_BBoxes"

    def crop_op(self):
        return _HorizontalFlip(1.0, self.level)


class SolarizeOnlyBBoxes(BBoxOnlyOp):
    """Solarize box crops at threshold int(25.6 * level)."""

    name = "Solarize_Only_BBoxes"

    def crop_op(self):
        return Solarize(1.0, self.level)


class EqualizeOnlyBBoxes(BBoxOnlyOp):
    """Equalize box crops with each crop's own histogram; level unused."""

    name = "Equalize_Only_BBoxes"

    def crop_op(self):
        return Equalize(1.0, self.level)


class CutoutOnlyBBoxes(BBoxOnlyOp):
    """Cutout inside box crops with half-size int(5 * level), centre uniform in the crop."""

    name = "Cutout_Only_BBoxes"

    def crop_op(self):
        return Cutout(1.0, self.level, cutout_const=CUTOUT_BBOX_CONST)


#: reference op name -> Augmentation class, in the reference's NAME_TO_FUNC order
OPS = {
    op.name: op
    for op in (
        AutoContrast,
        Equalize,
        Posterize,
        Solarize,
        SolarizeAdd,
        Color,
        Contrast,
        Brightness,
        Sharpness,
        Cutout,
        BBoxCutout,
        RotateBBox,
        TranslateXBBox,
        TranslateYBBox,
        ShearXBBox,
        ShearYBBox,
        RotateOnlyBBoxes,
        ShearXOnlyBBoxes,
        ShearYOnlyBBoxes,
        TranslateXOnlyBBoxes,
        TranslateYOnlyBBoxes,
        FlipOnlyBBoxes,
        SolarizeOnlyBBoxes,
        EqualizeOnlyBBoxes,
        CutoutOnlyBBoxes,
    )
}


def build_op(
    name: str,
    prob: float,
    level: int,
    *,
    box_mode: str = "drop",
    image_format: str = "RGB",
    reference_contrast: bool = False,
) -> AutoAugmentOp:
    """Instantiate op ``name``, passing each option only to the ops that take it."""
    if name not in OPS:
        raise ValueError(f"unknown AutoAugment op {name!r}; valid ops: {', '.join(OPS)}")
    op_class = OPS[name]
    options = {"box_mode": box_mode, "image_format": image_format, "reference_contrast": reference_contrast}
    accepted = inspect.signature(op_class).parameters
    return op_class(prob, level, **{key: value for key, value in options.items() if key in accepted})
