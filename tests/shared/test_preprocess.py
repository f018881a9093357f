"""Input checks: the shapes, dtypes and ranges the model takes, and the errors otherwise."""

import numpy as np
import pytest

from strata.preprocess import InputError, prepare, to_unit_images


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
