"""Bit-packed XNOR-popcount convolution against float +-1 arithmetic."""

import numpy as np

from strata.binary import (binary_conv3x3, binary_conv3x3_float_reference, or_pool2, pack_channels,
                           signs_from_words, weights_from_file, weights_to_file)


def random_layer(rng, cin, cout):
    signs = np.where(rng.random((cout, cin, 3, 3)) < 0.5, -1.0, 1.0)
    return signs, weights_from_file(weights_to_file(signs), cout, cin)


def test_weights_are_stored_at_one_bit_each():
    signs, _ = random_layer(np.random.default_rng(0), 96, 8)
    assert weights_to_file(signs).nbytes * 8 == signs.size


def test_pack_channels_pads_to_whole_words_with_zero_bits():
    bits = np.zeros((2, 3, 96), bool)
    bits[..., 0] = bits[..., 95] = True
    words = pack_channels(bits)
    assert words.shape == (2, 3, 2) and words.dtype == np.uint64
    assert (words[..., 0] == 1).all() and (words[..., 1] == 1 << 31).all()


def test_binary_conv_equals_float_plus_minus_one_conv():
    rng = np.random.default_rng(3)
    for cin, cout, size in ((32, 16, 6), (64, 8, 4), (96, 24, 5), (192, 8, 3)):
        bits = rng.random((2, size, size, cin)) < 0.5
        signs, weights = random_layer(rng, cin, cout)
        dots = binary_conv3x3(pack_channels(bits), weights, cin)
        assert dots.dtype == np.int32 and dots.shape == (2, size, size, cout)
        assert np.array_equal(signs_from_words(weights, cin), signs)
        assert np.array_equal(dots, binary_conv3x3_float_reference(bits, signs.astype(np.float32)))
        # and against the weights as the exporter saw them, with -1 padding
        x = np.pad(np.where(bits, 1.0, -1.0), ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-1)
        corner = (x[0, :3, :3].transpose(2, 0, 1)[None] * signs).sum(axis=(1, 2, 3))
        assert np.array_equal(dots[0, 0, 0], corner)


def test_or_pool_is_max_pool_of_signs():
    bits = np.random.default_rng(4).random((1, 4, 6, 3)) < 0.3
    signs = np.where(bits, 1, -1)
    pooled = signs.reshape(1, 2, 2, 3, 2, 3).max(axis=(2, 4))
    assert np.array_equal(np.where(or_pool2(bits), 1, -1), pooled)
