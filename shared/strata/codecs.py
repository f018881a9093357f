"""Tensor codecs for what crosses a cut: the trade between bytes and fidelity.

A codec name is a base, optionally followed by "+z" for a lossless zlib pass:

    f32    float32, exact
    f16    float16, half the bytes; relative error about 1e-3
    i8     int8 with one scale for the tensor (symmetric, scale = max|x| / 127)
    i8c    int8 with one scale per channel (axis 1, as in NCHW)

"+z" pays off on activations after ReLU, which are mostly zeros. The choice of codec is
part of the plan; docs/codecs.md has the measured bytes and accuracy of each.

The bases are for float tensors (float32, or float16, which f32 and f16 carry exactly).
An 8-bit integer tensor (uint8 camera pixels, a quantized model's activations) already
is as small as i8 and must arrive exact: whatever the plan's codec, it travels as its
own bytes (still zlib-compressed under "+z"), and the header names its `dtype`.
"""

from __future__ import annotations

import math
import reprlib
import zlib

import numpy as np

BASES = ("f32", "f16", "i8", "i8c")
CODECS = tuple(f"{base}{z}" for base in BASES for z in ("", "+z"))
ZLIB_LEVEL = 1  # level 1 gets nearly all of the gain on sparse activations, at a fraction of the time
EXACT_DTYPES = ("uint8", "int8")  # integer tensors sent as they are, whatever the codec
FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_RANK = 8  # batch plus up to 7 dims: every cut so far has 2 to 4 (numpy itself stops at 64)


class CodecError(ValueError):
    """A tensor that cannot be encoded or decoded as described."""


def _split(codec: str) -> tuple[str, bool]:
    if codec not in CODECS:
        raise CodecError(f"unknown codec {reprlib.repr(codec)}: expected one of {', '.join(CODECS)}")
    base, _, z = codec.partition("+")
    return base, bool(z)


def _scale(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    peak = np.abs(x).max(axis=axes, keepdims=True, initial=0.0)
    return np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)


def encode_tensor(x: np.ndarray, codec: str) -> tuple[dict, bytes]:
    """Encode a float tensor by the codec, or an 8-bit integer one exactly (EXACT_DTYPES);
    return (header fields, payload bytes)."""
    base, compress = _split(codec)
    if x.dtype.name in EXACT_DTYPES:
        data = np.ascontiguousarray(x).tobytes()
        header = {"codec": codec, "shape": list(x.shape), "dtype": x.dtype.name}
        return header, zlib.compress(data, ZLIB_LEVEL) if compress else data
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise CodecError("tensor contains NaN or Inf; refusing to encode it")
    header: dict = {"codec": codec, "shape": list(x.shape)}
    if base == "f32":
        data = x.tobytes()
    elif base == "f16":
        data = x.astype(np.float16).tobytes()
    else:
        if base == "i8c" and x.ndim < 2:
            raise CodecError(f"i8c needs a channel axis (ndim >= 2), got shape {x.shape}")
        axes = tuple(i for i in range(x.ndim) if i != 1) if base == "i8c" else tuple(range(x.ndim))
        scale = _scale(x, axes)
        data = np.clip(np.rint(x / scale), -127, 127).astype(np.int8).tobytes()
        header["scale"] = scale.reshape(-1).tolist()
    return header, zlib.compress(data, ZLIB_LEVEL) if compress else data


def tensor_shape(header: dict) -> tuple[int, ...]:
    """The shape a tensor header declares: a list of at most MAX_RANK non-negative
    integers (booleans are not integers). Read before anything is decoded, so a caller
    can check it against what it expects first."""
    shape = header.get("shape")
    if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(type(d) is int and d >= 0 for d in shape):
        raise CodecError(f"tensor shape must be a list of at most {MAX_RANK} non-negative integers, "
                         f"got {reprlib.repr(shape)}")
    return tuple(shape)


def decode_tensor(header: dict, payload: bytes, max_elements: int = 1 << 26) -> np.ndarray:
    """Decode what encode_tensor made, checking every field; the result is float32, or the
    header's integer `dtype`. A "+z" payload is inflated to at most the bytes the shape
    needs, so it cannot expand past max_elements."""
    base, compressed = _split(header.get("codec", ""))
    exact = header.get("dtype")
    if exact is not None and exact not in EXACT_DTYPES:
        raise CodecError(f"tensor dtype must be one of {', '.join(EXACT_DTYPES)} if given, got {exact!r}")
    shape = tensor_shape(header)
    count = math.prod(shape)
    if count > max_elements:
        raise CodecError(f"tensor of {count} elements exceeds the limit of {max_elements}")
    itemsize = 1 if exact else {"f32": 4, "f16": 2}.get(base, 1)
    if compressed:
        try:
            payload = zlib.decompressobj().decompress(payload, count * itemsize + 1)
        except zlib.error as exc:
            raise CodecError(f"payload is not valid zlib data: {exc}") from None
    if len(payload) != count * itemsize:
        raise CodecError(f"payload holds {len(payload)} bytes; shape {shape} as {exact or base} needs "
                         f"{count * itemsize}")
    if exact:
        return np.frombuffer(payload, exact).reshape(shape).copy()
    if base == "f32":
        x = np.frombuffer(payload, np.float32).reshape(shape).copy()
    elif base == "f16":
        x = np.frombuffer(payload, np.float16).reshape(shape).astype(np.float32)
    else:
        x = np.frombuffer(payload, np.int8).reshape(shape).astype(np.float32)
        x *= _scales(header, base, shape)
    if not np.isfinite(x).all():
        raise CodecError("tensor contains NaN or Inf")
    return x


def _scales(header: dict, base: str, shape: list[int]) -> np.ndarray:
    scale = header.get("scale")
    channels = shape[1] if base == "i8c" and len(shape) >= 2 else 1
    if not isinstance(scale, list) or len(scale) != channels or not all(
            type(s) in (int, float) and abs(s) <= FLOAT32_MAX for s in scale):
        raise CodecError(f"{base} needs 'scale', a list of {channels} float32 number(s); got {reprlib.repr(scale)}")
    values = np.asarray(scale, np.float32)
    if base == "i8c":
        return values.reshape((1, channels) + (1,) * (len(shape) - 2))
    return values.reshape(())


def encoded_bytes(codec: str, shape: tuple[int, ...] | list[int], z_ratio: float = 1.0,
                  dtype: str = "float32") -> int:
    """Expected payload bytes of one sample of `shape` (no batch) and `dtype` under `codec`.

    Exact for the bases (one byte per element for EXACT_DTYPES, whatever the codec); for
    "+z" the base size divided by `z_ratio`, the compression ratio last seen on real
    tensors at that cut (zlib's gain depends on the data).
    """
    base, compress = _split(codec)
    count = int(np.prod(shape))
    size = count * (1 if dtype in EXACT_DTYPES else {"f32": 4, "f16": 2}.get(base, 1))
    return max(1, int(size / z_ratio)) if compress else size


def payload_bound(codec: str, shape: tuple[int, ...] | list[int], dtype: str = "float32") -> int:
    """The most payload bytes one sample of `shape` (no batch) and `dtype` can take under
    `codec`, whatever its values: the base's exact size and, for "+z", zlib's worst case
    on it (compressBound in zlib's compress.c: n + n/4096 + n/16384 + n/2**25 + 13; data
    that does not compress grows by that much)."""
    base, compress = _split(codec)
    size = encoded_bytes(base, shape, dtype=dtype)
    return size + (size >> 12) + (size >> 14) + (size >> 25) + 13 if compress else size
