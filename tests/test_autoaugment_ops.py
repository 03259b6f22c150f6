"""AutoAugment ops: level mapping, colour-op definitions, warps vs TF's sampling, box math, bbox-only ops, and
properties (every op keeps boxes inside the image, hypothesis)."""

import math

import numpy as np
import pytest
from detectron2.data import transforms as T
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from detnas_d2.data.autoaugment import OPS, AutoAugment, build_op, nonempty_boxes, ops

GEOMETRIC_OPS = ("Rotate_BBox", "TranslateX_BBox", "TranslateY_BBox", "ShearX_BBox", "ShearY_BBox")


# ------------------------------------------------------------------------------------------------ levels
def test_level_to_argument_matches_the_reference_table():
    levels = [0, 2, 4, 6, 8, 10]
    assert [ops.rotate_degrees(level) for level in levels] == pytest.approx([0, 6, 12, 18, 24, 30])
    assert [ops.translate_pixels(level, ops.TRANSLATE_CONST) for level in levels] == pytest.approx(
        [0, 50, 100, 150, 200, 250]
    )
    assert [ops.translate_pixels(level, ops.TRANSLATE_BBOX_CONST) for level in levels] == pytest.approx(
        [0, 24, 48, 72, 96, 120]
    )
    assert [ops.shear_coefficient(level) for level in levels] == pytest.approx([0, 0.06, 0.12, 0.18, 0.24, 0.30])
    assert [ops.enhance_factor(level) for level in levels] == pytest.approx([0.10, 0.46, 0.82, 1.18, 1.54, 1.90])
    assert [ops.cutout_pad_size(level, ops.CUTOUT_CONST) for level in levels] == [0, 20, 40, 60, 80, 100]
    assert [ops.cutout_pad_size(level, ops.CUTOUT_BBOX_CONST) for level in levels] == [0, 10, 20, 30, 40, 50]
    assert [ops.bbox_cutout_fraction(level) for level in levels] == pytest.approx([0, 0.15, 0.30, 0.45, 0.60, 0.75])
    assert [ops.solarize_threshold(level) for level in levels] == [0, 51, 102, 153, 204, 256]
    assert [ops.solarize_addition(level) for level in levels] == [0, 22, 44, 66, 88, 110]
    assert [ops.posterize_bits(level) for level in levels] == [0, 0, 1, 2, 3, 4]
    # every integer level of the integer-valued args equals the reference code's closed forms
    for level in range(11):
        assert ops.cutout_pad_size(level, 100) == 10 * level and ops.cutout_pad_size(level, 50) == 5 * level
        assert ops.solarize_addition(level) == 11 * level
        assert ops.solarize_threshold(level) == int(25.6 * level + 1e-9)


def test_there_are_25_ops_with_reference_names():
    assert len(OPS) == 25
    assert {"Rotate_BBox", "BBox_Cutout", "Cutout_Only_BBoxes", "Flip_Only_BBoxes", "SolarizeAdd"} <= set(OPS)


# ------------------------------------------------------------------------------------------------ colour ops
def _channel_image(values):
    """A 1xN RGB image whose three channels all hold ``values``."""
    row = np.array(values, dtype=np.uint8)
    return np.stack([row, row, row], axis=-1)[None]


def test_solarize_and_solarize_add_definitions():
    img = _channel_image([0, 50, 127, 128, 200, 255])
    assert ops.SolarizeTransform(128).apply_image(img)[0, :, 0].tolist() == [0, 50, 127, 127, 55, 0]
    assert ops.SolarizeTransform(0).apply_image(img)[0, :, 0].tolist() == [255, 205, 128, 127, 55, 0]
    assert np.array_equal(ops.SolarizeTransform(256).apply_image(img), img)
    # pixels < 128 get + addition capped at 255; >= 128 untouched; nothing is inverted
    assert ops.SolarizeAddTransform(110).apply_image(img)[0, :, 0].tolist() == [110, 160, 237, 128, 200, 255]
    assert ops.SolarizeAddTransform(0).apply_image(img)[0, :, 0].tolist() == [0, 50, 127, 128, 200, 255]


def test_posterize_definition_and_tf_bits_zero():
    img = _channel_image([0, 37, 100, 127, 128, 200, 255])
    assert ops.PosterizeTransform(2).apply_image(img)[0, :, 0].tolist() == [0, 0, 64, 64, 128, 192, 192]
    assert ops.PosterizeTransform(4).apply_image(img)[0, :, 0].tolist() == [0, 32, 96, 112, 128, 192, 240]
    # TF clamps the shift 8 -> 7: bits 0 keeps one bit (0 / 128), unlike PIL's black
    assert ops.PosterizeTransform(0).apply_image(img)[0, :, 0].tolist() == [0, 0, 0, 0, 128, 128, 128]
    rng = np.random.RandomState(0)
    random_image = rng.randint(0, 256, (9, 11, 3)).astype(np.uint8)
    for bits in (1, 2, 3, 4):
        pil = np.asarray(ImageOps.posterize(Image.fromarray(random_image), bits))
        assert np.array_equal(ops.PosterizeTransform(bits).apply_image(random_image), pil)


def test_equalize_hand_computed_and_matches_pil():
    # channel histogram: 10 x4, 20 x2, 30 x2 -> step = (8 - 2) // 255 = 0 -> unchanged
    small = _channel_image([10, 10, 10, 10, 20, 20, 30, 30])
    assert np.array_equal(ops.EqualizeTransform().apply_image(small), small)
    # 600 pixels: 0 x300, 100 x200, 200 x100 -> step = (600 - 100) // 255 = 1
    # lut = (cumsum + 0) // 1 shifted right: lut[0] = 0, lut[100] = 300, lut[200] = 500, clipped to 255
    big = _channel_image([0] * 300 + [100] * 200 + [200] * 100)
    out = ops.EqualizeTransform().apply_image(big)[0, :, 0]
    assert out[0] == 0 and out[300] == 255 and out[599] == 255
    # 1020 pixels, step = (1020 - 255) // 255 = 3: value v -> (cumsum(v - 1) + 1) // 3
    values = [5] * 510 + [60] * 255 + [90] * 255
    out = ops.EqualizeTransform().apply_image(_channel_image(values))[0, :, 0]
    assert (out[0], out[510], out[1019]) == (0, (510 + 1) // 3, (765 + 1) // 3)
    rng = np.random.RandomState(1)
    for _ in range(20):
        image = (rng.randint(0, 256, (17, 13, 3)) // rng.randint(1, 64)).astype(np.uint8)
        pil = np.asarray(ImageOps.equalize(Image.fromarray(image)))
        assert np.array_equal(ops.EqualizeTransform().apply_image(image), pil)


def test_autocontrast_definition():
    img = np.zeros((1, 4, 3), dtype=np.uint8)
    img[0, :, 0] = [50, 100, 150, 250]  # stretch (p - 50) * 255 / 200, truncated
    img[0, :, 1] = [7, 7, 7, 7]  # flat channel kept
    img[0, :, 2] = [0, 1, 2, 3]
    out = ops.AutoContrastTransform().apply_image(img)
    assert out[0, :, 0].tolist() == [0, 63, 127, 255]
    assert out[0, :, 1].tolist() == [7, 7, 7, 7]
    assert out[0, :, 2].tolist() == [0, 85, 170, 255]


def test_brightness_blend_definition():
    img = _channel_image([0, 3, 100, 201, 255])
    assert ops.BrightnessTransform(0.5).apply_image(img)[0, :, 0].tolist() == [0, 1, 50, 100, 127]  # truncation
    assert ops.BrightnessTransform(1.5).apply_image(img)[0, :, 0].tolist() == [0, 4, 150, 255, 255]  # clip
    assert np.array_equal(ops.BrightnessTransform(1.0).apply_image(img), img)
    assert not ops.BrightnessTransform(0.0).apply_image(img).any()


def test_color_uses_reference_luma_and_blend():
    img = np.array([[[200, 100, 50], [10, 20, 30]]], dtype=np.uint8)
    # luma = floor((.2989 r + .5870 g + .1140 b) * 255.5 / 255)
    gray = [
        math.floor((0.2989 * 200 + 0.5870 * 100 + 0.1140 * 50) * 255.5 / 255),
        math.floor((0.2989 * 10 + 0.5870 * 20 + 0.1140 * 30) * 255.5 / 255),
    ]
    assert gray == [124, 18]
    assert ops.ColorTransform(0.0).apply_image(img).tolist() == [[[124] * 3, [18] * 3]]
    # factor 0.5: gray + 0.5 * (p - gray), truncated
    assert ops.ColorTransform(0.5).apply_image(img).tolist() == [[[162, 112, 87], [14, 19, 24]]]
    # factor 1.5 extrapolates away from gray, clipped
    assert ops.ColorTransform(1.5).apply_image(img).tolist() == [[[238, 88, 13], [6, 21, 36]]]
    # BGR images use the permuted weights: same result on the reversed channels
    assert np.array_equal(
        ops.ColorTransform(1.5, "BGR").apply_image(img[..., ::-1]), ops.ColorTransform(1.5).apply_image(img)[..., ::-1]
    )


def test_contrast_true_mean_and_reference_flag():
    img = np.array([[[0, 0, 0], [255, 255, 255], [100, 100, 100], [60, 60, 60]]], dtype=np.uint8)
    # luma of gray pixels p is floor(0.9999 * p * 255.5 / 255): 0, 255, 100, 60 -> mean 103.75 -> 104
    out = ops.ContrastTransform(0.5).apply_image(img)
    assert out[..., 0].tolist() == [[52, 179, 102, 82]]  # 104 + 0.5 * (p - 104), truncated
    # reference: gray level = min(H * W / 256, 255) = 4 / 256 -> 0 for this 4-pixel image
    assert ops.ContrastTransform(0.5, reference_contrast=True).apply_image(img)[..., 0].tolist() == [[0, 127, 50, 30]]
    big = np.full((256, 300, 3), 100, dtype=np.uint8)  # >= 65,536 pixels: the reference blends toward white
    assert ops.ContrastTransform(0.1, reference_contrast=True).apply_image(big)[0, 0, 0] == int(255 + 0.1 * (100 - 255))
    assert ops.ContrastTransform(0.1).apply_image(big)[0, 0, 0] == 100  # a flat image is its own mean


def test_sharpness_smooth_kernel_and_border():
    img = np.zeros((4, 4, 3), dtype=np.uint8)
    img[1, 1] = 130  # single bright pixel inside
    smooth = ops.SharpnessTransform(0.0).apply_image(img)[..., 0]
    # interior pixels: sum(kernel * p) // 13 -> centre 5 * 130 // 13 = 50, its interior neighbours 130 // 13 = 10
    assert smooth.tolist() == [[0, 0, 0, 0], [0, 50, 10, 0], [0, 10, 10, 0], [0, 0, 0, 0]]
    sharp = ops.SharpnessTransform(1.5).apply_image(img)[..., 0]
    # 50 + 1.5 * (130 - 50) = 170 ; 10 + 1.5 * (0 - 10) = -5 -> clipped 0 ; border unchanged
    assert sharp.tolist() == [[0, 0, 0, 0], [0, 170, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    tiny = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    assert np.array_equal(ops.SharpnessTransform(1.9).apply_image(tiny), tiny)  # all border


# ------------------------------------------------------------------------------------------------ geometry
def _tf_projective_warp(image, transform):
    """Independent model of TF's ImageProjectiveTransform (nearest, std::round, fill 128) + tie mask."""
    height, width = image.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    a0, a1, a2, b0, b1, b2 = transform
    src_x, src_y = a0 * xs + a1 * ys + a2, b0 * xs + b1 * ys + b2
    round_x = (np.sign(src_x) * np.floor(np.abs(src_x) + 0.5)).astype(int)
    round_y = (np.sign(src_y) * np.floor(np.abs(src_y) + 0.5)).astype(int)
    inside = (round_x >= 0) & (round_x < width) & (round_y >= 0) & (round_y < height)
    out = np.full_like(image, 128)
    out[inside] = image[round_y[inside], round_x[inside]]
    near_tie = (np.abs(np.abs(src_x % 1) - 0.5) < 1e-3) | (np.abs(np.abs(src_y % 1) - 0.5) < 1e-3)
    return out, ~near_tie


def _tf_rotate_params(degrees, height, width):
    radians = math.radians(degrees)
    cos, sin = math.cos(radians), math.sin(radians)
    x_offset = ((width - 1) - (cos * (width - 1) - sin * (height - 1))) / 2.0
    y_offset = ((height - 1) - (sin * (width - 1) + cos * (height - 1))) / 2.0
    return (cos, -sin, x_offset, sin, cos, y_offset)


def test_image_warps_match_tf_sampling():
    rng = np.random.RandomState(2)
    checked = 0
    for _ in range(30):
        height, width = rng.randint(8, 48, size=2)
        image = rng.randint(0, 256, (height, width, 3)).astype(np.uint8)
        angle, shear, pixels = rng.uniform(-30, 30), rng.uniform(-0.3, 0.3), float(rng.randint(-30, 30))
        cases = [
            (ops.RotateTransform(angle, height, width), _tf_rotate_params(angle, height, width)),
            (ops.ShearTransform(shear, "x", height, width), (1, shear, 0, 0, 1, 0)),
            (ops.ShearTransform(shear, "y", height, width), (1, 0, 0, shear, 1, 0)),
            (ops.TranslateTransform(pixels, "x", height, width), (1, 0, pixels, 0, 1, 0)),
            (ops.TranslateTransform(pixels, "y", height, width), (1, 0, 0, 0, 1, pixels)),
        ]
        for transform, tf_params in cases:
            expected, comparable = _tf_projective_warp(image, tf_params)
            got = transform.apply_image(image)
            assert got.shape == image.shape and got.dtype == np.uint8
            assert np.array_equal(got[comparable], expected[comparable]), transform
            checked += comparable.sum()
    assert checked > 100_000


def test_box_math_default_mode_hand_computed():
    height, width = 100, 200
    box = np.array([[20.0, 10.0, 60.0, 30.0]])
    # translate: content (and box) moves by -pixels, clipped to the canvas
    assert ops.TranslateTransform(50, "x", height, width).apply_box(box).tolist() == [[0, 10, 10, 30]]
    assert ops.TranslateTransform(-50, "y", height, width).apply_box(box).tolist() == [[20, 60, 60, 80]]
    # shear x: x' = x - s * (y - 0.5)  (origin = centre of the top-left pixel)
    np.testing.assert_allclose(ops.ShearTransform(0.1, "x", height, width).apply_box(box), [[17.05, 10, 59.05, 30]])
    # shear y: y' = y - s * (x - 0.5)
    np.testing.assert_allclose(ops.ShearTransform(0.1, "y", height, width).apply_box(box), [[20, 4.05, 60, 28.05]])
    # rotate 90 degrees counter-clockwise about (100, 50): x' = 100 + (y - 50), y' = 50 - (x - 100)
    np.testing.assert_allclose(ops.RotateTransform(90, height, width).apply_box(box), [[60, 90, 80, 100]], atol=1e-9)
    # rotate 30 degrees: corners (+-20, +-10) around the centre -> enclosing box
    centred = np.array([[80.0, 40.0, 120.0, 60.0]])
    r3 = math.sqrt(3)
    np.testing.assert_allclose(
        ops.RotateTransform(30, height, width).apply_box(centred),
        [[95 - 10 * r3, 40 - 5 * r3, 105 + 10 * r3, 60 + 5 * r3]],
    )


def test_box_math_reference_mode_hand_computed():
    height, width = 100, 200
    # rotate 30: centre-relative ints (y up) (10, -20), (10, 20), (-10, -20), (-10, 20) -> rotated, truncated
    rotated = ops.RotateTransform(30, height, width, "reference").apply_box([[80.0, 40.0, 120.0, 60.0]])
    assert rotated.tolist() == [[78, 32, 122, 68]]
    # shear truncates the box to ints first, then each corner again: x' = trunc(x - 0.1 * y)
    sheared = ops.ShearTransform(0.1, "x", height, width, "reference").apply_box([[20.7, 10.2, 60.3, 30.9]])
    assert sheared.tolist() == [[17, 10, 59, 30]]
    # translate re-quantizes and clamps
    moved = ops.TranslateTransform(5, "y", height, width, "reference").apply_box([[20.7, 10.2, 60.3, 30.9]])
    assert moved.tolist() == [[20, 5, 60, 25]]
    # pushed off the left / right: the 5 % slivers [0, 0.05 W] and [0.95 W, W] keep the box alive
    assert ops.TranslateTransform(50, "x", height, width, "reference").apply_box([[20, 10, 40, 30]]).tolist() == [
        [0, 10, 10, 30]
    ]
    assert ops.TranslateTransform(-50, "x", height, width, "reference").apply_box(
        [[170.7, 10.2, 199.9, 30.9]]
    ).tolist() == [[190, 10, 200, 30]]


def test_drop_mode_vanished_boxes_stay_empty():
    height, width = 100, 200
    gone = ops.TranslateTransform(50, "x", height, width).apply_box([[20, 10, 40, 30]])
    assert gone.tolist() == [[0, 10, 0, 30]] and not nonempty_boxes(gone).any()
    for transform in (
        ops.RotateTransform(20, height, width),
        ops.ShearTransform(0.3, "y", height, width),
        ops.TranslateTransform(-30, "x", height, width),
    ):
        gone = transform.apply_box(gone)
        assert not nonempty_boxes(gone).any(), transform


def test_geometric_segmentation_fill_zero_and_coords_match_boxes():
    seg = np.ones((20, 30), dtype=np.uint8)
    warped = ops.TranslateTransform(10, "x", 20, 30).apply_segmentation(seg)
    assert warped[:, :20].all() and not warped[:, 20:].any()
    transform = ops.RotateTransform(17, 20, 30)
    corners = np.array([[2.0, 3.0], [9.0, 3.0], [2.0, 7.0], [9.0, 7.0]])
    mapped = transform.apply_coords(corners.copy())
    box = transform.apply_box([[2.0, 3.0, 9.0, 7.0]])[0]
    assert np.allclose(box, [mapped[:, 0].min(), mapped[:, 1].min(), mapped[:, 0].max(), mapped[:, 1].max()])


# ------------------------------------------------------------------------------------------------ cutouts
def _filled_rows_and_cols(before, after):
    changed = np.any(after != before, axis=2)
    rows, cols = np.nonzero(changed)
    return rows, cols, changed


def test_cutout_hole_size_fill_and_clipping():
    np.random.seed(3)
    height, width, level = 40, 50, 1  # half-size 10 px
    image = np.zeros((height, width, 3), dtype=np.uint8)
    for _ in range(300):
        aug_input = T.AugInput(image.copy())
        OPS["Cutout"](1.0, level)(aug_input)
        rows, cols, changed = _filled_rows_and_cols(image, aug_input.image)
        y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert changed[y0:y1, x0:x1].all() and changed.sum() == (y1 - y0) * (x1 - x0)  # one rectangle
        assert (aug_input.image[changed] == 128).all()
        for start, stop, size in ((y0, y1, height), (x0, x1, width)):
            centre = start + 10 if start > 0 else stop - 10
            assert 0 <= centre < size and start == max(0, centre - 10) and stop == min(size, centre + 10)
    assert ops.cutout_pad_size(0, ops.CUTOUT_CONST) == 0  # level 0 is an empty hole


def test_bbox_cutout_hole_inside_chosen_box():
    np.random.seed(4)
    image = np.zeros((60, 80, 3), dtype=np.uint8)
    box = np.array([[20.0, 10.0, 60.0, 50.0]])  # pixels rows 10..50, cols 20..60
    for _ in range(200):
        aug_input = T.AugInput(image.copy(), boxes=box.copy())
        OPS["BBox_Cutout"](1.0, 10)(aug_input)  # fraction .75 -> half-sizes int(.75 * 41 / 2) = 15
        rows, cols, _ = _filled_rows_and_cols(image, aug_input.image)
        assert np.array_equal(aug_input.boxes, box)
        centre_y = rows.min() + 15 if rows.min() > 0 else rows.max() + 1 - 15
        centre_x = cols.min() + 15 if cols.min() > 0 else cols.max() + 1 - 15
        assert rows.max() + 1 - rows.min() <= 30 and cols.max() + 1 - cols.min() <= 30
        assert 10 <= centre_y <= 50 and 20 <= centre_x <= 60
    no_boxes = T.AugInput(image.copy())
    OPS["BBox_Cutout"](1.0, 10)(no_boxes)
    assert np.array_equal(no_boxes.image, image)


# ------------------------------------------------------------------------------------------------ bbox-only
def test_flip_only_bboxes_per_box_probability_and_crop():
    np.random.seed(5)
    image = np.random.randint(0, 256, (30, 40, 3)).astype(np.uint8)
    box = np.array([[5.5, 4.2, 20.0, 12.9]])  # crop rows 4..12, cols 5..20 inclusive
    fired = 0
    trials = 3000
    for _ in range(trials):
        aug_input = T.AugInput(image.copy(), boxes=box.copy())
        OPS["Flip_Only_BBoxes"](0.6, 0)(aug_input)
        assert np.array_equal(aug_input.boxes, box)
        if not np.array_equal(aug_input.image, image):
            fired += 1
            expected = image.copy()
            expected[4:13, 5:21] = image[4:13, 5:21][:, ::-1]
            assert np.array_equal(aug_input.image, expected)
    assert abs(fired / trials - 0.6 / 3) < 0.03  # per-box probability p / 3


def test_bbox_only_crop_ops_hand_computed():
    crop = np.arange(5 * 5 * 3, dtype=np.uint8).reshape(5, 5, 3)
    moved = ops.TranslateTransform(2, "x", 5, 5).apply_image(crop)
    assert np.array_equal(moved[:, :3], crop[:, 2:]) and (moved[:, 3:] == 128).all()
    # the transform applies crop transforms in order, each on the current pixels
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    image[2:7, 2:7] = crop
    regions = [(2, 7, 2, 7), (2, 7, 2, 7)]
    twice = ops.BBoxOnlyTransform(regions, [ops.TranslateTransform(2, "x", 5, 5)] * 2).apply_image(image)
    assert np.array_equal(twice[2:7, 2:3], crop[:, 4:5]) and (twice[2:7, 3:7] == 128).all()
    assert not twice[:2].any() and not twice[7:].any()


def test_bbox_only_ops_ignore_vanished_boxes_in_drop_mode():
    np.random.seed(6)
    image = np.random.randint(0, 256, (20, 20, 3)).astype(np.uint8)
    empty_box = np.array([[0.0, 5.0, 0.0, 15.0]])
    for name in ("Equalize_Only_BBoxes", "Flip_Only_BBoxes", "Cutout_Only_BBoxes", "BBox_Cutout"):
        for _ in range(30):
            aug_input = T.AugInput(image.copy(), boxes=empty_box.copy())
            build_op(name, 1.0, 10)(aug_input)
            assert np.array_equal(aug_input.image, image), name


# ------------------------------------------------------------------------------------------------ properties
def _random_case(rng, max_boxes=6):
    height, width = rng.randint(32, 65, size=2)
    image = rng.randint(0, 256, (height, width, 3)).astype(np.uint8)
    count = rng.randint(0, max_boxes + 1)
    x0, y0 = rng.uniform(0, width - 2, count), rng.uniform(0, height - 2, count)
    x1, y1 = rng.uniform(x0 + 1, width), rng.uniform(y0 + 1, height)
    return image, np.stack([x0, y0, x1, y1], axis=1).reshape(-1, 4)


def _random_policy(rng, names=tuple(OPS), max_sub_policies=3, max_ops=3):
    return [
        [
            (names[rng.randint(len(names))], float(rng.choice([0.2, 0.5, 0.8, 1.0])), int(rng.randint(11)))
            for _ in range(rng.randint(1, max_ops + 1))
        ]
        for _ in range(rng.randint(1, max_sub_policies + 1))
    ]


@pytest.mark.parametrize("box_mode,cases", [("drop", 1500), ("reference", 300)])
def test_property_boxes_stay_valid_and_aligned(box_mode, cases):
    rng = np.random.RandomState(7)
    survived = dropped = 0
    for case in range(cases):
        np.random.seed(case)
        image, boxes = _random_case(rng)
        augmentation = AutoAugment(_random_policy(rng), box_mode=box_mode)
        aug_input = T.AugInput(image.copy(), boxes=boxes.copy())
        transforms = augmentation(aug_input)
        out = aug_input.boxes
        assert aug_input.image.shape == image.shape and aug_input.image.dtype == np.uint8
        assert out.shape == boxes.shape
        height, width = image.shape[:2]
        assert (out[:, 0::2] >= 0).all() and (out[:, 0::2] <= width).all()
        assert (out[:, 1::2] >= 0).all() and (out[:, 1::2] <= height).all()
        # survivors have x0 < x1 and y0 < y1; the rest are exactly empty (never inverted)
        assert (out[:, 2] >= out[:, 0]).all() and (out[:, 3] >= out[:, 1]).all()
        keep = nonempty_boxes(out)
        survived, dropped = survived + keep.sum(), dropped + (~keep).sum()
        # each box is transformed on its own: re-applying the transforms per box (as the mapper does per
        # annotation) gives the same boxes, so class ids indexed like the boxes stay aligned
        for index in range(len(boxes)):
            assert np.allclose(transforms.apply_box(boxes[index : index + 1].copy()), out[index : index + 1])
        assert np.array_equal(transforms.apply_image(image), aug_input.image)
    assert survived > 2 * cases
    if box_mode == "drop":
        assert dropped > 50  # the loop exercises vanishing boxes
    else:
        assert dropped == 0  # the reference's slivers keep every (non-degenerate) box


@st.composite
def _image_and_boxes(draw, max_boxes=4):
    """A random uint8 image of 8..64 px a side and up to ``max_boxes`` boxes inside it (x0 < x1, y0 < y1)."""
    height, width = draw(st.integers(8, 64)), draw(st.integers(8, 64))
    pixels = np.random.RandomState(draw(st.integers(0, 2**32 - 1))).randint(0, 256, (height, width, 3))
    boxes = []
    for _ in range(draw(st.integers(0, max_boxes))):
        x0, x1 = sorted(draw(st.lists(st.floats(0, width), min_size=2, max_size=2, unique=True)))
        y0, y1 = sorted(draw(st.lists(st.floats(0, height), min_size=2, max_size=2, unique=True)))
        boxes.append([x0, y0, x1, y1])
    return pixels.astype(np.uint8), np.array(boxes, dtype=np.float64).reshape(-1, 4)


@pytest.mark.parametrize("name", sorted(OPS))
@settings(max_examples=15, deadline=None, derandomize=True, database=None)
@given(
    case=_image_and_boxes(),
    level=st.integers(0, 10),
    box_mode=st.sampled_from(ops.BOX_MODES),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_every_op_keeps_boxes_inside_the_image(name, case, level, box_mode, seed):
    image, boxes = case
    np.random.seed(seed)
    aug_input = T.AugInput(image.copy(), boxes=boxes.copy())
    AutoAugment([[(name, 1.0, level)]], box_mode=box_mode)(aug_input)
    out, (height, width) = aug_input.boxes, image.shape[:2]
    assert aug_input.image.shape == image.shape and out.shape == boxes.shape
    assert (out[:, 0::2] >= 0).all() and (out[:, 0::2] <= width).all()
    assert (out[:, 1::2] >= 0).all() and (out[:, 1::2] <= height).all()
    assert (out[:, 2] >= out[:, 0]).all() and (out[:, 3] >= out[:, 1]).all()


def test_property_identity_settings_change_nothing():
    rng = np.random.RandomState(9)
    for case in range(800):
        np.random.seed(case)
        image, boxes = _random_case(rng)
        never = [[(name, 0.0, level) for name, _, level in sub] for sub in _random_policy(rng)]
        level_zero = [[(name, 1.0, 0) for name, _, _ in sub] for sub in _random_policy(rng, names=GEOMETRIC_OPS)]
        for policy in (never, level_zero):
            aug_input = T.AugInput(image.copy(), boxes=boxes.copy())
            AutoAugment(policy)(aug_input)
            assert np.array_equal(aug_input.image, image), policy
            assert np.allclose(aug_input.boxes, boxes), policy


def test_composes_with_detectron2_augmentations():
    np.random.seed(10)
    image = np.random.randint(0, 256, (50, 100, 3)).astype(np.uint8)
    boxes = np.array([[10.0, 5.0, 30.0, 25.0], [60.0, 20.0, 90.0, 45.0]])
    pipeline = T.AugmentationList(
        [AutoAugment([[("TranslateX_BBox", 1.0, 1)]]), T.ResizeShortestEdge(100, 1000), T.RandomFlip(prob=1.0)]
    )
    seen = set()
    for _ in range(20):
        aug_input = T.AugInput(image.copy(), boxes=boxes.copy())
        transforms = pipeline(aug_input)
        shift = transforms.transforms[0].pixels  # +-25 px at the original resolution, then x2 and mirrored
        moved = np.clip(boxes - [shift, 0, shift, 0], 0, [100, 50, 100, 50]) * 2
        expected = np.stack([200 - moved[:, 2], moved[:, 1], 200 - moved[:, 0], moved[:, 3]], axis=1)
        assert aug_input.image.shape == (100, 200, 3)
        assert np.allclose(aug_input.boxes, expected)
        seen.add(shift)
    assert seen == {25.0, -25.0}


# ------------------------------------------------------------------------------------------------ errors
def test_op_argument_errors():
    with pytest.raises(ValueError, match=r"probability 1.5 is outside \[0, 1\]"):
        OPS["Equalize"](1.5, 3)
    with pytest.raises(ValueError, match="level 11 is outside 0..10"):
        OPS["Rotate_BBox"](0.5, 11)
    with pytest.raises(ValueError, match="box_mode must be one of"):
        OPS["ShearX_BBox"](0.5, 3, box_mode="keep")
    with pytest.raises(ValueError, match="image_format in"):
        OPS["Color"](0.5, 3, image_format="YUV")
    with pytest.raises(ValueError, match="unknown AutoAugment op 'Invert'; valid ops: AutoContrast, Equalize"):
        build_op("Invert", 0.5, 3)
    with pytest.raises(ValueError, match="need a uint8 HxWx3 image, got float32"):
        OPS["Equalize"](1.0, 0)(T.AugInput(np.zeros((4, 4, 3), dtype=np.float32)))
