"""Pictures for the page's tests: PNG files made from numpy arrays, and photos of kinds a
person would upload (an object on a plain background, something no model here knows)."""

from __future__ import annotations

import struct
import zlib

import numpy as np


def png(pixels: np.ndarray) -> bytes:
    """An 8-bit PNG of a uint8 (rows, cols) grey or (rows, cols, 3) RGB array, encoded by hand with zlib."""
    pixels = np.asarray(pixels, np.uint8)
    rows, cols = pixels.shape[:2]
    colour_type = 0 if pixels.ndim == 2 else 2

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    scanlines = b"".join(b"\x00" + row.tobytes() for row in pixels)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", cols, rows, 8, colour_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(scanlines)) + chunk(b"IEND", b""))


def trousers_photo() -> np.ndarray:
    """Dark trousers on a light background, as a phone photo of them would be: 240 x 180 grey."""
    image = np.full((240, 180), 235, np.uint8)
    image[20:75, 50:131] = 45  # waistband and hips
    for row in range(75, 226):
        t = (row - 75) / 150
        image[row, round(50 - 8 * t):round(87 - 4 * t)] = 45  # left leg, widening a little
        image[row, round(94 + 4 * t):round(131 + 8 * t)] = 45  # right leg
    return image


def circuit_board(seed: int) -> np.ndarray:
    """A green circuit board with coloured parts: 120 x 160 RGB, nothing a clothing model has seen."""
    rng = np.random.default_rng(seed)
    image = np.full((120, 160, 3), (20, 90, 40), np.uint8)
    for _ in range(40):
        top, left = rng.integers(0, 110), rng.integers(0, 150)
        image[top:top + rng.integers(2, 12), left:left + rng.integers(2, 30)] = rng.integers(100, 255, 3)
    return image
