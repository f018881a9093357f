"""Float layers against straightforward loop definitions."""

import numpy as np
import pytest

from strata.layers import conv2d, global_avg_pool, linear, maxpool2, run_ops


def naive_conv(x, weight, bias, pad_value):
    n, c, h, w = x.shape
    cout = weight.shape[0]
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=pad_value)
    out = np.zeros((n, cout, h, w), np.float64)
    for i in range(h):
        for j in range(w):
            patch = padded[:, :, i:i + 3, j:j + 3].reshape(n, -1)
            out[:, :, i, j] = patch @ weight.reshape(cout, -1).T + bias
    return out


def test_conv2d_matches_the_definition():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    for pad_value in (0.0, -1.0):
        got = conv2d(x, weight, bias, pad_value=pad_value)
        assert got.shape == (2, 4, 6, 5)
        assert np.allclose(got, naive_conv(x, weight, bias, pad_value), atol=1e-4)


def test_conv2d_refuses_mismatched_channels():
    with pytest.raises(ValueError, match="expects 2 input channels, got 3"):
        conv2d(np.zeros((1, 3, 4, 4), np.float32), np.zeros((1, 2, 3, 3), np.float32))


def test_pooling_and_linear():
    x = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4)
    assert maxpool2(x)[0, 0].tolist() == [[5, 7], [13, 15]]
    assert global_avg_pool(x).tolist() == [[7.5, 23.5]]
    assert linear(np.ones((1, 2), np.float32), np.eye(2, dtype=np.float32), np.array([1, 2], np.float32)).tolist() == [[2, 3]]


def test_run_ops_chains_a_block_and_rejects_unknown_ops():
    rng = np.random.default_rng(2)
    tensors = {"w": rng.standard_normal((2, 1, 3, 3)).astype(np.float32), "b": np.zeros(2, np.float32),
               "fw": np.ones((3, 2), np.float32), "fb": np.zeros(3, np.float32)}
    ops = [{"op": "conv3x3", "weight": "w", "bias": "b"}, {"op": "relu"}, {"op": "maxpool2"},
           {"op": "gap"}, {"op": "linear", "weight": "fw", "bias": "fb"}]
    x = rng.standard_normal((1, 1, 4, 4)).astype(np.float32)
    expected = maxpool2(np.maximum(conv2d(x, tensors["w"], tensors["b"]), 0)).mean(axis=(2, 3)).sum(1)
    assert np.allclose(run_ops(ops, tensors, x), expected[:, None].repeat(3, 1), atol=1e-6)
    with pytest.raises(ValueError, match="unknown op 'softmax'"):
        run_ops([{"op": "softmax"}], tensors, x)
