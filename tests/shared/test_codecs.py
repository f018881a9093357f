"""Tensor codecs. Runs in CPython (pytest) and inside Pyodide (tests/test_in_pyodide.py)."""

import numpy as np
import pytest

from strata.codecs import CODECS, CodecError, decode_tensor, encode_tensor, encoded_bytes


def _activation(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 8, 6, 6)).astype(np.float32)
    x[:, 3] *= 20  # one loud channel, where a per-channel scale helps
    return np.maximum(x, 0)  # post-ReLU, mostly zeros like the real cut


def test_every_codec_round_trips_within_its_error():
    x = _activation()
    tolerance = {"f32": 0.0, "f16": 2e-2, "i8": float(x.max()) / 127 / 2 + 1e-6}
    for codec in CODECS:
        header, payload = encode_tensor(x, codec)
        y = decode_tensor(header, payload)
        assert y.dtype == np.float32 and y.shape == x.shape
        base = codec.split("+")[0]
        if base == "i8c":
            per_channel = np.abs(x).max(axis=(0, 2, 3)) / 127 / 2 + 1e-6
            assert (np.abs(y - x).max(axis=(0, 2, 3)) <= per_channel).all(), codec
        else:
            assert np.abs(y - x).max() <= tolerance[base], codec


def test_sizes_shrink_as_promised():
    x = _activation()
    size = {codec: len(encode_tensor(x, codec)[1]) for codec in CODECS}
    assert size["f32"] == x.size * 4
    assert size["f16"] == x.size * 2
    assert size["i8"] == size["i8c"] == x.size
    assert size["f32+z"] < size["f32"] * 0.8  # half the activations are zero


def test_per_channel_scale_is_closer_than_per_tensor():
    x = _activation(1)
    error = {c: np.abs(decode_tensor(*encode_tensor(x, c)) - x).mean() for c in ("i8", "i8c")}
    assert error["i8c"] < error["i8"]


def test_zero_tensor_and_empty_batch():
    for shape in [(1, 4, 2, 2), (0, 4, 2, 2)]:
        x = np.zeros(shape, np.float32)
        for codec in CODECS:
            assert np.array_equal(decode_tensor(*encode_tensor(x, codec)), x)


def test_bad_tensors_are_refused_with_a_reason():
    x = _activation()
    header, payload = encode_tensor(x, "f16")
    with pytest.raises(CodecError, match="needs"):
        decode_tensor(header, payload[:-2])
    with pytest.raises(CodecError, match="unknown codec"):
        decode_tensor({**header, "codec": "bf16"}, payload)
    with pytest.raises(CodecError, match="shape"):
        decode_tensor({**header, "shape": [2, -1]}, payload)
    with pytest.raises(CodecError, match="NaN or Inf"):
        encode_tensor(np.array([[np.nan]], np.float32), "f32")
    inf = np.full(4, np.inf, np.float32).tobytes()
    with pytest.raises(CodecError, match="NaN or Inf"):
        decode_tensor({"codec": "f32", "shape": [1, 4]}, inf)
    q_header, q_payload = encode_tensor(x, "i8c")
    with pytest.raises(CodecError, match="scale"):
        decode_tensor({**q_header, "scale": [1.0]}, q_payload)
    with pytest.raises(CodecError, match="zlib"):
        decode_tensor({**header, "codec": "f16+z"}, b"not zlib")


def test_integer_tensors_travel_exactly_whatever_the_codec():
    rng = np.random.default_rng(2)
    for dtype in (np.uint8, np.int8):
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, (2, 8, 8, 3), endpoint=True).astype(dtype)
        for codec in CODECS:
            header, payload = encode_tensor(x, codec)
            y = decode_tensor(header, payload)
            assert header["dtype"] == x.dtype.name and y.dtype == dtype and np.array_equal(y, x), codec
            if not codec.endswith("+z"):
                assert len(payload) == x.size
    assert encoded_bytes("f32", (8, 8, 3), dtype="uint8") == encoded_bytes("i8c", (8, 8, 3), dtype="uint8") == 192
    assert encoded_bytes("f32", (8, 8, 3)) == 768
    header, payload = encode_tensor(np.zeros((1, 4), np.uint8), "f32")
    with pytest.raises(CodecError, match="dtype must be one of uint8, int8"):
        decode_tensor({**header, "dtype": "int64"}, payload)
    with pytest.raises(CodecError, match="as uint8 needs 4"):
        decode_tensor(header, payload[:-1])


def test_shapes_are_lists_of_at_most_eight_plain_integers():
    payload = bytes(4)
    for shape in ([True], [1, True], [1] * 9, [1.0], "1", None):
        with pytest.raises(CodecError, match="shape"):
            decode_tensor({"codec": "f32", "shape": shape}, payload)
    with pytest.raises(CodecError, match="exceeds the limit"):
        decode_tensor({"codec": "f32", "shape": [10**30]}, payload)
    assert decode_tensor({"codec": "f32", "shape": [1] * 8}, payload).shape == (1,) * 8


def test_a_compressed_payload_inflates_no_further_than_its_shape():
    import zlib
    bomb = zlib.compress(bytes(64 << 20), 9)  # 64 MiB of zeros in some 64 KB
    with pytest.raises(CodecError, match="payload holds 4097 bytes"):
        decode_tensor({"codec": "f32+z", "shape": [1, 1024]}, bomb)
    with pytest.raises(CodecError, match="exceeds the limit"):
        decode_tensor({"codec": "f32+z", "shape": [16 << 20]}, bomb, max_elements=1 << 20)


def test_scales_are_float32_numbers():
    q_header, q_payload = encode_tensor(_activation(), "i8")
    for scale in ([True], [10**40], ["1"]):
        with pytest.raises(CodecError, match="scale"):
            decode_tensor({**q_header, "scale": scale}, q_payload)
