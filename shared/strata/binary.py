"""Binary (+-1) convolution on bit-packed words: XOR, then popcount.

A value +1 is bit 1 and -1 is bit 0, so the dot product of two +-1 vectors of length K
is K - 2 * popcount(a XOR w). Activations are packed along channels into uint64 words
(channels padded with zero bits to a multiple of 64, in weights and activations alike,
so the padding never mismatches), and the 3x3 patch is gathered on words: packing, the
slow step in Pyodide, touches each activation bit once, and numpy's per-element cost is
paid per 64 bits. Padding pixels are all-zero words, that is -1, which is how the
branch was trained.

`binary_conv3x3_float_reference` computes the same thing with float +-1 matmuls. It is
there only so tests and the benchmark can check and time the bit-packed path against it.
"""

from __future__ import annotations

import numpy as np

from strata.layers import conv2d, pad_spatial

WORD = np.dtype("<u8")
MAX_TEMPORARY = 1 << 22  # words in the (patch words, positions, Cout) temporary, bounds memory


def pack_channels(bits: np.ndarray) -> np.ndarray:
    """Pack a boolean (..., C) array into (..., ceil(C / 64)) little-endian uint64 words."""
    spare = -bits.shape[-1] % 64
    if spare:
        bits = np.concatenate([bits, np.zeros((*bits.shape[:-1], spare), bool)], axis=-1)
    flat = np.packbits(bits.reshape(-1), bitorder="little")  # one long row: fast in Pyodide
    return flat.view(WORD).reshape(*bits.shape[:-1], -1)


def weights_from_file(packed: np.ndarray, cout: int, cin: int) -> np.ndarray:
    """Turn the bundle's 1-bit-per-weight layout (cout, ky, kx, cin) into (9 * words, cout) words."""
    bits = np.unpackbits(packed, count=cout * 9 * cin, bitorder="little").astype(bool)
    return np.ascontiguousarray(pack_channels(bits.reshape(cout, 9, cin)).reshape(cout, -1).T)


def weights_to_file(signs: np.ndarray) -> np.ndarray:
    """Pack +-1 weights (cout, cin, 3, 3) to 1 bit each, in (cout, ky, kx, cin) order."""
    return np.packbits(signs.transpose(0, 2, 3, 1).reshape(-1) > 0, bitorder="little")


def patches3x3(words: np.ndarray) -> np.ndarray:
    """(N, H, W, Wd) packed pixels -> (N, H, W, 9 * Wd) packed 3x3 patches, -1 padding."""
    n, h, w, _ = words.shape
    padded = pad_spatial(words, 1, 0, axis=1)
    return np.concatenate([padded[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=-1)


def binary_conv3x3(words: np.ndarray, weights: np.ndarray, cin: int) -> np.ndarray:
    """+-1 conv3x3 as XNOR-popcount: packed (N, H, W, Wd) -> integer dots (N, H, W, Cout).

    Works on (patch words, positions, Cout) arrays so each numpy call has long inner
    loops: Pyodide's numpy has no SIMD and pays a fixed cost per inner loop, which a short
    axis of 9 to 27 words would incur once per position and channel. The word sum then
    runs over the outer axis as whole-slab adds, in uint16 (at most 9 * 64 * words).
    """
    n, h, w, _ = words.shape
    columns = np.ascontiguousarray(patches3x3(words).reshape(n * h * w, -1).T)[:, :, None]  # (9 * Wd, P, 1)
    mismatches = np.empty((n * h * w, weights.shape[1]), dtype=np.uint16)
    step = max(1, MAX_TEMPORARY // weights.size)
    for first in range(0, n * h * w, step):
        differing = np.bitwise_count(columns[:, first:first + step] ^ weights[:, None, :])
        mismatches[first:first + step] = differing.sum(axis=0, dtype=np.uint16)
    return (9 * cin - 2 * mismatches.astype(np.int32)).reshape(n, h, w, -1)


def or_pool2(bits: np.ndarray) -> np.ndarray:
    """2x2 max-pool of +-1 values stored as bits (N, H, W, C): a logical OR (odd sizes floor)."""
    bits = bits[:, :bits.shape[1] // 2 * 2, :bits.shape[2] // 2 * 2]
    return (bits[:, 0::2, 0::2] | bits[:, 0::2, 1::2]) | (bits[:, 1::2, 0::2] | bits[:, 1::2, 1::2])


def signs_from_words(weights: np.ndarray, cin: int) -> np.ndarray:
    """Packed weights (9 * words, cout) back to float +-1 (cout, cin, 3, 3), for the reference."""
    cout = weights.shape[1]
    bits = np.unpackbits(weights.T.copy().view(np.uint8), axis=-1, bitorder="little").reshape(cout, 3, 3, -1)
    return bits[..., :cin].transpose(0, 3, 1, 2).astype(np.float32) * 2 - 1


def binary_conv3x3_float_reference(bits: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """The same dots as binary_conv3x3, by float +-1 im2col + matmul. Tests and benchmark only.

    Takes unpacked bits (N, H, W, C) and the weights from signs_from_words, so both paths
    start from identical data and only the arithmetic differs.
    """
    x = bits.transpose(0, 3, 1, 2).astype(np.float32) * 2 - 1
    dots = conv2d(x, signs, pad_value=-1.0).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(dots).astype(np.int32)  # exact: sums of +-1 far below 2**24
