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


LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, as the page's canvas code uses
FLAT_RANGE = 16  # grey levels: a picture flatter than this is left unstretched (stretching shows noise)


def _area_weights(source: int, target: int) -> np.ndarray:
    """(target, source) weights averaging each output cell's share of the input cells."""
    edges = np.arange(target + 1) * (source / target)
    cells = np.arange(source)
    overlap = np.clip(np.minimum(edges[1:, None], cells + 1) - np.maximum(edges[:-1, None], cells), 0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def resize_area(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Resize (H, W) or (H, W, C) to (rows, cols[, C]) by area averaging (cv2's INTER_AREA
    for shrinking), in numpy alone so that Pyodide runs it too; float32 out."""
    image = np.asarray(image, np.float32)
    down = _area_weights(image.shape[0], rows)
    across = _area_weights(image.shape[1], cols)
    return np.einsum("rh,hw...,cw->rc...", down, image, across)


def greyscale(picture: np.ndarray) -> np.ndarray:
    """A uint8 picture (H, W), (H, W, 3) or (H, W, 4) as float32 grey 0..255; transparent
    pixels are seen on white, as a page shows them."""
    picture = np.asarray(picture)
    if picture.dtype != np.uint8 or picture.ndim not in (2, 3) or (picture.ndim == 3 and picture.shape[2] not in (3, 4)):
        raise InputError(f"expected a uint8 picture shaped (H, W), (H, W, 3) or (H, W, 4); "
                         f"got {picture.dtype} {picture.shape}")
    if picture.ndim == 2:
        return picture.astype(np.float32)
    grey = picture[..., :3].astype(np.float32) @ LUMA
    if picture.shape[2] == 4:
        alpha = picture[..., 3].astype(np.float32) / 255
        grey = grey * alpha + 255 * (1 - alpha)
    return grey


def fit_picture(picture: np.ndarray, rows: int = RAW_SIZE, cols: int = RAW_SIZE, invert: bool | None = None,
                contrast: bool = True) -> np.ndarray:
    """A photo as the model's raw input: uint8 (rows, cols), a light object on a dark
    background as in Fashion-MNIST.

    The picture (see greyscale()) is fitted whole into rows x cols, aspect kept and padded
    with the grey of its border ring; inverted when `invert` says so, or, if None, when
    that border is light (a dark object on a light page, as photos usually are); then its
    contrast is stretched to 0..255 unless it is flatter than FLAT_RANGE grey levels.
    """
    grey = greyscale(picture)
    height, width = grey.shape
    ring = max(1, min(height, width) // 16)
    border = np.concatenate([grey[:ring].ravel(), grey[-ring:].ravel(), grey[:, :ring].ravel(), grey[:, -ring:].ravel()])
    background = float(border.mean())
    scale = min(cols / width, rows / height)
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    canvas = np.full((rows, cols), background, np.float32)
    top, left = (rows - h) // 2, (cols - w) // 2
    canvas[top:top + h, left:left + w] = resize_area(grey, h, w)
    if background > 127 if invert is None else invert:
        canvas = 255 - canvas
    low, high = (float(canvas.min()), float(canvas.max())) if contrast else (0.0, 255.0)
    if high - low < FLAT_RANGE:
        low, high = 0.0, 255.0
    return np.clip(np.rint(255 * (canvas - low) / (high - low)), 0, 255).astype(np.uint8)
