"""Float layers in plain numpy (NCHW, float32), and a runner for a block's op list.

They run conv1 in the browser, and any other float block the planner moves onto the
device. Convolution is im2col + one matmul: in Pyodide (no BLAS, no SIMD) one large
matmul is the fastest thing numpy does.
"""

from __future__ import annotations

import numpy as np


def pad_spatial(x: np.ndarray, pad: int, value: float, axis: int) -> np.ndarray:
    """Pad axes `axis` and `axis + 1` (H and W) on both sides. np.pad is ~50x slower in Pyodide."""
    shape = list(x.shape)
    shape[axis] += 2 * pad
    shape[axis + 1] += 2 * pad
    out = np.full(shape, value, x.dtype)
    inner = [slice(None)] * x.ndim
    inner[axis], inner[axis + 1] = slice(pad, shape[axis] - pad), slice(pad, shape[axis + 1] - pad)
    out[tuple(inner)] = x
    return out


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None,
           pad: int = 1, pad_value: float = 0.0) -> np.ndarray:
    """Stride-1 convolution of (N, C, H, W) by weight (Cout, C, kh, kw).

    The patches are stacked as (C * kh * kw, N * OH * OW), which matches the weight's
    own memory order, so one plain 2-D matmul does the work.
    """
    n, c, h, w = x.shape
    cout, cin, kh, kw = weight.shape
    if c != cin:
        raise ValueError(f"conv expects {cin} input channels, got {c}")
    padded = pad_spatial(x.transpose(1, 0, 2, 3), pad, pad_value, axis=2)  # (C, N, H + 2p, W + 2p)
    oh, ow = h + 2 * pad - kh + 1, w + 2 * pad - kw + 1
    cols = np.stack([padded[:, :, dy:dy + oh, dx:dx + ow] for dy in range(kh) for dx in range(kw)], axis=1)
    out = weight.reshape(cout, -1) @ cols.reshape(c * kh * kw, n * oh * ow)
    if bias is not None:
        out += bias[:, None]
    return out.reshape(cout, n, oh, ow).transpose(1, 0, 2, 3)


def relu(x: np.ndarray) -> np.ndarray:
    return x.clip(min=0)


def _even(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) without an odd last row and column: a 2x2 pool floors, as torch's and ONNX's do."""
    return x[:, :, :x.shape[2] // 2 * 2, :x.shape[3] // 2 * 2]


def maxpool2(x: np.ndarray) -> np.ndarray:
    """2x2 max-pool, stride 2, of (N, C, H, W), flooring odd sizes (four strided slices:
    reducing over tiny reshaped axes is several times slower in Pyodide)."""
    x = _even(x)
    return np.maximum(np.maximum(x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2]),
                      np.maximum(x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]))


def avgpool2(x: np.ndarray) -> np.ndarray:
    """2x2 average pool, stride 2, of (N, C, H, W) float32, flooring odd sizes (the same
    four strided slices as maxpool2)."""
    x = _even(x)
    return ((x[:, :, 0::2, 0::2] + x[:, :, 0::2, 1::2]) + (x[:, :, 1::2, 0::2] + x[:, :, 1::2, 1::2])) * np.float32(0.25)


def global_avg_pool(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N, C)."""
    return x.mean(axis=(2, 3))


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(N, in) -> (N, out) with weight (out, in), as torch.nn.Linear stores it."""
    return x @ weight.T + bias


def run_ops(ops: list[dict], tensors: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Run a float block described as data, e.g. [{"op": "conv3x3", "weight": ..., "bias": ...}, {"op": "relu"}].

    Blocks are described this way in the manifest and the bundle, so the device can run
    whichever blocks the planner hands it without code specific to each block.
    """
    for op in ops:
        kind = op["op"]
        if kind == "conv3x3":
            x = conv2d(x, tensors[op["weight"]], tensors[op["bias"]])
        elif kind == "relu":
            x = relu(x)
        elif kind == "maxpool2":
            x = maxpool2(x)
        elif kind == "gap":
            x = global_avg_pool(x)
        elif kind == "linear":
            x = linear(x, tensors[op["weight"]], tensors[op["bias"]])
        else:
            raise ValueError(f"unknown op {kind!r}: expected conv3x3, relu, maxpool2, gap or linear")
    return x.astype(np.float32, copy=False)
