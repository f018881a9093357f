"""Turn greyscale images into the network's input tensor, refusing anything else.

The same function feeds training, the browser and the evaluation, so a model never sees
inputs prepared two different ways. Errors name what was expected, because the caller
is often JavaScript handing over a canvas it got slightly wrong.
"""

from __future__ import annotations

import numpy as np

RAW_SIZE = 28  # Fashion-MNIST images
SIZE = 32  # the network's input: raw images zero-padded by 2 pixels on each side
EXPECTED = (
    f"a batch of greyscale images shaped (N, {RAW_SIZE}, {RAW_SIZE}), (N, {SIZE}, {SIZE}) "
    f"or (N, 1, {SIZE}, {SIZE}), as uint8 in 0..255 or float32 in [0, 1]"
)


class InputError(ValueError):
    """An input image batch the model cannot take."""


def to_unit_images(images: np.ndarray) -> np.ndarray:
    """Check a batch and return it as float32 (N, 1, 32, 32) in [0, 1], zero-padded."""
    if not isinstance(images, np.ndarray):
        raise InputError(f"expected a numpy array: {EXPECTED}; got {type(images).__name__}")
    if images.dtype == np.uint8:
        unit = images.astype(np.float32) / np.float32(255)
    elif images.dtype == np.float32:
        if images.size and not (np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1):
            raise InputError(f"float32 pixels must lie in [0, 1] (expected {EXPECTED}); "
                             f"got values from {images.min()} to {images.max()}")
        unit = images
    else:
        raise InputError(f"expected dtype uint8 or float32 ({EXPECTED}); got {images.dtype}")
    if unit.ndim == 4 and unit.shape[1] == 1:
        unit = unit[:, 0]
    if unit.ndim != 3 or unit.shape[1:] not in ((RAW_SIZE, RAW_SIZE), (SIZE, SIZE)) or not len(unit):
        raise InputError(f"expected {EXPECTED}; got shape {images.shape}")
    margin = (SIZE - unit.shape[1]) // 2
    padded = np.zeros((len(unit), 1, SIZE, SIZE), np.float32)  # not np.pad: 10x slower in Pyodide
    padded[:, 0, margin:SIZE - margin, margin:SIZE - margin] = unit
    return padded


def prepare(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Check, pad and normalize a batch: what block 0 (conv1) takes as input."""
    return ((to_unit_images(images) - np.float32(mean)) / np.float32(std)).astype(np.float32)
