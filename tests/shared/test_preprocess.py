"""Input checks: the shapes, dtypes and ranges the model takes, and the errors otherwise."""

import numpy as np
import pytest

from strata.preprocess import (
    InputError,
    PictureRule,
    border_grey,
    fit_picture,
    input_to_picture,
    picture_to_input,
    prepare,
    resize,
    to_unit_images,
)


def test_raw_28x28_uint8_is_scaled_and_zero_padded_to_32x32():
    images = np.full((2, 28, 28), 255, np.uint8)
    unit = to_unit_images(images)
    assert unit.shape == (2, 1, 32, 32) and unit.dtype == np.float32
    assert unit[:, 0, 2:30, 2:30].min() == 1.0
    assert unit.sum() == 2 * 28 * 28  # the 2-pixel border is zero


def test_padded_float_input_passes_through_and_normalizes():
    images = np.random.default_rng(0).random((3, 1, 32, 32), dtype=np.float32)
    assert np.array_equal(to_unit_images(images), images)
    assert np.allclose(prepare(images, 0.5, 0.25), (images - 0.5) / 0.25)


def test_wrong_shape_names_the_expected_shapes():
    with pytest.raises(InputError, match=r"\(N, 28, 28\).*got shape \(28, 28\)"):
        to_unit_images(np.zeros((28, 28), np.uint8))
    with pytest.raises(InputError, match="got shape"):
        to_unit_images(np.zeros((1, 3, 32, 32), np.float32))


def test_wrong_dtype_names_the_accepted_dtypes():
    with pytest.raises(InputError, match="uint8 or float32.*float64"):
        to_unit_images(np.zeros((1, 28, 28)))
    with pytest.raises(InputError, match="numpy array"):
        to_unit_images([[0] * 28] * 28)


def test_out_of_range_floats_are_refused():
    images = np.zeros((1, 28, 28), np.float32)
    images[0, 0, 0] = 255.0
    with pytest.raises(InputError, match=r"\[0, 1\].*255"):
        to_unit_images(images)
    images[0, 0, 0] = np.nan
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        to_unit_images(images)


# ---------------------------------------------------------------- any model's pictures

def _solid(height, width, colour):
    return np.broadcast_to(np.asarray(colour, np.uint8), (height, width, 3)).copy()


def _input(shape, layout="NCHW", dtype="float32", **rule):
    return {"shape": shape, "layout": layout, "dtype": dtype, "preprocess": PictureRule(**rule).to_manifest()}


def test_a_picture_becomes_the_input_its_manifest_describes():
    picture = _solid(12, 20, (255, 0, 51))
    x = picture_to_input(picture, _input([3, 8, 8], mean=(0.5,), std=(0.25,)))
    assert x.shape == (3, 8, 8) and x.dtype == np.float32
    assert np.allclose(x.mean(axis=(1, 2)), [2.0, -2.0, -1.2], atol=1e-5) and np.allclose(x.std(axis=(1, 2)), 0, atol=1e-6)
    bgr = picture_to_input(picture, _input([8, 8, 3], "NHWC", channel_order="BGR", scale=1.0, mean=(104, 117, 123)))
    assert bgr.shape == (8, 8, 3) and np.allclose(bgr[0, 0], [51 - 104, 0 - 117, 255 - 123])
    pixels = picture_to_input(picture, _input([8, 8, 3], "NHWC", "uint8"))
    assert pixels.dtype == np.uint8 and (pixels == picture[0, 0]).all()
    assert picture_to_input(picture, _input([3, 8, 8], dtype="float16")).dtype == np.float16
    grey = picture_to_input(picture, _input([1, 8, 8]))
    assert grey.shape == (1, 8, 8) and np.allclose(grey, (0.299 * 255 + 0.114 * 51) / 255, atol=1e-5)
    rgba = np.concatenate([picture, np.zeros((12, 20, 1), np.uint8)], axis=2)
    assert np.array_equal(picture_to_input(rgba, _input([3, 8, 8])), picture_to_input(picture, _input([3, 8, 8])))


def test_shorter_side_crops_the_centre_and_stretch_keeps_everything():
    picture = _solid(16, 48, (0, 0, 0))
    picture[:, 12:36] = 255  # a white band in the middle of a wide black picture
    shorter = picture_to_input(picture, _input([8, 8, 3], "NHWC", crop_fraction=1.0))
    stretch = picture_to_input(picture, _input([8, 8, 3], "NHWC", resize="stretch", crop_fraction=1.0))
    assert np.allclose(shorter, 1.0)  # only the middle is left
    assert np.allclose(stretch[:, 3:5], 1.0) and np.allclose(stretch[:, 0], 0.0) and np.allclose(stretch[:, -1], 0.0)


def test_resize_averages_when_shrinking_and_keeps_a_ramp_when_growing():
    ramp = np.tile(np.arange(0, 256, 8, dtype=np.uint8)[None, :, None], (4, 1, 1))  # 4 x 32, one channel
    half = resize(ramp, 4, 16)[0, 1:-1, 0]
    pairs = ramp[0, 2:-2, 0].astype(np.float32).reshape(-1, 2).mean(axis=1)
    assert np.allclose(half, pairs, atol=1e-3)  # a ramp: the triangle filter gives each pair's mean
    grown = resize(ramp[:, :4], 4, 8)[0, :, 0]
    assert (np.diff(grown) >= 0).all() and grown[0] == 0 and grown[-1] == 24


def test_pictures_and_rules_that_do_not_fit_say_what_was_expected():
    with pytest.raises(InputError, match=r"uint8 \(H, W, 3\)"):
        picture_to_input(np.zeros((8, 8, 3), np.float32), _input([3, 8, 8]))
    with pytest.raises(InputError, match="mean needs 1 or 3 values, got 2"):
        picture_to_input(_solid(8, 8, (0, 0, 0)), _input([3, 8, 8], mean=(0.1, 0.2)))
    with pytest.raises(InputError, match="not a picture"):
        picture_to_input(_solid(8, 8, (0, 0, 0)), {"shape": [16, 5], "layout": None})
    with pytest.raises(InputError, match="5 channels"):
        picture_to_input(_solid(8, 8, (0, 0, 0)), _input([5, 8, 8]))


def test_an_input_shows_again_as_the_picture_it_came_from():
    picture = _solid(8, 8, (200, 30, 90))
    for model_input in (_input([3, 8, 8], mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
                        _input([8, 8, 3], "NHWC", channel_order="BGR", scale=1.0, mean=(104, 117, 123)),
                        _input([8, 8, 3], "NHWC", "uint8"),
                        _input([3, 8, 8], dtype="float16")):
        shown = input_to_picture(picture_to_input(picture, model_input), model_input)
        assert shown.dtype == np.uint8 and shown.shape == (8, 8, 3)
        assert np.abs(shown.astype(int) - picture).max() <= 1, model_input
    grey = input_to_picture(picture_to_input(picture, _input([1, 8, 8])), _input([1, 8, 8]))
    assert (grey[..., 0] == grey[..., 1]).all() and abs(int(grey[0, 0, 0]) - round(0.299 * 200 + 0.587 * 30 + 0.114 * 90)) <= 1
    with pytest.raises(InputError, match=r"expected one input shaped \[3, 8, 8\]"):
        input_to_picture(np.zeros((3, 4, 4), np.float32), _input([3, 8, 8]))
    with pytest.raises(InputError, match="not a picture"):
        input_to_picture(np.zeros(5, np.float32), {"shape": [5], "layout": None})


def test_fit_picture_pads_with_the_border_grey_and_inverts_a_light_one():
    page = np.full((40, 20), 230, np.uint8)
    page[10:30, 5:15] = 20  # a dark object on a light page
    assert border_grey(page.astype(np.float32)) == 230
    fitted = fit_picture(page, 28, 28)
    assert fitted[14, 14] == 255 and fitted[0, 0] == 0, "inverted: a light object on a dark background"
    assert fit_picture(page, 28, 28, invert=False)[14, 14] == 0
