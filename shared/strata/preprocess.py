"""Turn pictures into a network's input tensor, refusing anything else.

Two models, two functions, each the only one of its kind:
- our Fashion-MNIST model: `prepare` pads and normalizes 28x28 greyscale images; it feeds
  training, the browser and the evaluation alike; `fit_picture` turns a photo into such
  an image (the page's uploads and camera frames, in the worker, and `strata classify`);
- any model made by `strata split`: `picture_to_input` turns a photo (uint8 H x W x 3, as a
  decoder or a canvas gives it) into the model's input by the rule its manifest records
  (`input.preprocess`, a PictureRule): split's samples.npz, the page's uploads and
  `strata classify` go through it, so a model never sees inputs prepared two different
  ways. `input_to_picture` shows an input as a picture again.
strata.client.pictures picks the function for a model.
Pure numpy (it runs in Pyodide, which has no PIL): the resize is numpy's too. Errors name
what was expected, because the caller is often JavaScript handing over a canvas it got
slightly wrong.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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


# ---------------------------------------------------------------- any model's pictures

LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 luma, as PIL's "L" and the page's canvas
RESIZE_RULES = {
    "shorter": "the shorter side to size / crop_fraction, keeping the aspect ratio",
    "stretch": "both sides to size / crop_fraction, ignoring the aspect ratio",
}


@dataclass(frozen=True)
class PictureRule:
    """How a picture becomes a model's input: resize (RESIZE_RULES), centre crop to the input's
    height and width, channel order, then x = (pixels / scale - mean) / std per channel, in
    the model's channel order. The defaults are the ImageNet evaluation's geometry (224 of
    256: crop_fraction 0.875) with pixels in [0, 1]. A model taking uint8 pixels gets them
    resized and cropped only."""

    resize: str = "shorter"
    crop_fraction: float = 0.875
    channel_order: str = "RGB"  # or "BGR"; a 1-channel input takes luma (ITU-R 601) instead
    scale: float = 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def to_manifest(self) -> dict:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std),
                "rule": f"{RESIZE_RULES.get(self.resize, self.resize)}, centre crop, {self.channel_order}, "
                        "(pixels / scale - mean) / std"}

    @classmethod
    def from_manifest(cls, entry: dict) -> PictureRule:
        fields = {k: entry[k] for k in ("resize", "crop_fraction", "channel_order", "scale") if k in entry}
        return cls(**fields, **{k: tuple(entry[k]) for k in ("mean", "std") if k in entry})

    def check(self, channels: int) -> None:
        """Raise InputError for a rule that cannot apply to a `channels`-channel input."""
        if self.resize not in RESIZE_RULES:
            raise InputError(f"resize must be one of {', '.join(RESIZE_RULES)}, not {self.resize!r}")
        if not 0 < self.crop_fraction <= 1:
            raise InputError(f"crop_fraction must be in (0, 1], not {self.crop_fraction}")
        if self.channel_order not in ("RGB", "BGR"):
            raise InputError(f"channel_order must be RGB or BGR, not {self.channel_order!r}")
        for name in ("mean", "std"):
            if len(getattr(self, name)) not in (1, channels):
                raise InputError(f"{name} needs 1 or {channels} values, got {len(getattr(self, name))}")
        if not all(self.std):
            raise InputError(f"std must not hold 0, got {list(self.std)}")
        if not self.scale:
            raise InputError("scale must not be 0")


def picture_geometry(model_input: dict) -> tuple[int, int, int, str]:
    """(height, width, channels, layout) of a model's per-sample input, from the manifest's
    `input` entry {"shape", "layout"}; InputError if it is not a 1- or 3-channel picture."""
    shape, layout = model_input.get("shape"), model_input.get("layout")
    if not isinstance(shape, list) or len(shape) != 3 or layout not in ("NCHW", "NHWC"):
        raise InputError(f"the model's input {shape} (layout {layout}) is not a picture: "
                         "pictures need an NCHW or NHWC input with 1 or 3 channels")
    channels, height, width = shape if layout == "NCHW" else (shape[2], shape[0], shape[1])
    if channels not in (1, 3):
        raise InputError(f"the model's input has {channels} channels; pictures give 1 (grey) or 3 (colour)")
    return height, width, channels, layout


def _resample(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Resize one axis of a float32 array with a triangle filter widened by the reduction
    (antialiased bilinear, as PIL's BILINEAR): each output pixel averages its footprint."""
    n = x.shape[axis]
    scale = n / size
    support = max(scale, 1.0)
    centres = (np.arange(size) + 0.5) * scale
    taps = np.floor(centres - support + 0.5).astype(np.intp)[:, None] + np.arange(int(np.ceil(support)) * 2 + 1)
    weights = np.maximum(0.0, 1.0 - np.abs((taps + 0.5 - centres[:, None]) / support))
    weights[(taps < 0) | (taps >= n)] = 0.0
    weights /= weights.sum(axis=1, keepdims=True)
    taps = np.clip(taps, 0, n - 1)
    shape = [1] * x.ndim
    shape[axis] = size
    out = np.zeros(x.shape[:axis] + (size,) + x.shape[axis + 1:], np.float32)
    for t in range(taps.shape[1]):  # a few taps: a loop keeps memory at one output's size
        out += np.take(x, taps[:, t], axis=axis) * weights[:, t].reshape(shape).astype(np.float32)
    return out


def resize(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """A (H, W, C) picture resized to (height, width, C) float32 (antialiased bilinear)."""
    x = pixels.astype(np.float32)
    if x.shape[1] != width:
        x = _resample(x, width, axis=1)
    if x.shape[0] != height:
        x = _resample(x, height, axis=0)
    return x


def picture_to_input(pixels: np.ndarray, model_input: dict) -> np.ndarray:
    """One picture as the model's per-sample input (no batch axis), by the manifest's rule.

    pixels: uint8 (H, W, 3) RGB, (H, W, 4) RGBA (a canvas; alpha is dropped) or (H, W) grey.
    model_input: the manifest's `input` entry: shape, layout, dtype and `preprocess` (a
    PictureRule; defaults if absent). Returns the input's shape and dtype (float32, float16
    or uint8). Raises InputError naming what was expected.
    """
    height, width, channels, layout = picture_geometry(model_input)
    rule = PictureRule.from_manifest(model_input.get("preprocess") or {})
    rule.check(channels)
    dtype = np.dtype(model_input.get("dtype", "float32"))
    if dtype not in (np.float32, np.float16, np.uint8):
        raise InputError(f"the model's input is {dtype}; pictures become float32, float16 or uint8 inputs")
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) \
            or (pixels.ndim == 3 and pixels.shape[2] not in (3, 4)) or not pixels.size:
        raise InputError("expected a picture as uint8 (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) grey; got "
                         f"{getattr(pixels, 'dtype', type(pixels).__name__)} {getattr(pixels, 'shape', '')}")
    colour = pixels[..., :3] if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, axis=2)
    if channels == 1:
        colour = colour @ LUMA[:, None]  # luma, as PIL's "L"
    elif rule.channel_order == "BGR":
        colour = colour[..., ::-1]
    if rule.resize == "shorter":
        ratio = max(height, width) / rule.crop_fraction / min(colour.shape[:2])
        size = (max(height, round(colour.shape[0] * ratio)), max(width, round(colour.shape[1] * ratio)))
    else:
        size = (max(height, round(height / rule.crop_fraction)), max(width, round(width / rule.crop_fraction)))
    resized = resize(colour, *size)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    x = resized[top:top + height, left:left + width]
    if dtype == np.uint8:
        x = np.clip(np.rint(x), 0, 255)
    else:
        mean, std = (np.asarray(v, np.float32) for v in (rule.mean, rule.std))
        x = (x / np.float32(rule.scale) - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1) if layout == "NCHW" else x).astype(dtype)


def input_to_picture(x: np.ndarray, model_input: dict) -> np.ndarray:
    """One per-sample input back as the picture the model sees: uint8 (H, W, 3) RGB, the
    inverse of picture_to_input's scaling and channel order (not of its resize and crop).
    For showing samples and uploads on a page; InputError if the input is not a picture."""
    height, width, channels, layout = picture_geometry(model_input)
    rule = PictureRule.from_manifest(model_input.get("preprocess") or {})
    x = np.asarray(x)
    if x.shape != tuple(model_input["shape"]):
        raise InputError(f"expected one input shaped {model_input['shape']}; got {x.shape}")
    pixels = (x.transpose(1, 2, 0) if layout == "NCHW" else x).astype(np.float32)
    if x.dtype != np.uint8:
        pixels = (pixels * np.asarray(rule.std, np.float32) + np.asarray(rule.mean, np.float32)) * np.float32(rule.scale)
    if channels == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    elif rule.channel_order == "BGR":
        pixels = pixels[..., ::-1]
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- photos for our Fashion-MNIST model

FLAT_RANGE = 16  # grey levels: a picture flatter than this is left unstretched (stretching shows noise)


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


def border_grey(grey: np.ndarray) -> float:
    """The mean grey (0..255) of a (H, W) grey picture's outer ring, 1/16 of its shorter side
    wide: the background fit_picture pads with, and inverts when it is light (> 127)."""
    height, width = grey.shape
    ring = max(1, min(height, width) // 16)
    return float(np.concatenate([grey[:ring].ravel(), grey[-ring:].ravel(),
                                 grey[:, :ring].ravel(), grey[:, -ring:].ravel()]).mean())


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
    background = border_grey(grey)
    scale = min(cols / width, rows / height)
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    canvas = np.full((rows, cols), background, np.float32)
    top, left = (rows - h) // 2, (cols - w) // 2
    canvas[top:top + h, left:left + w] = resize(grey[..., None], h, w)[..., 0]
    if background > 127 if invert is None else invert:
        canvas = 255 - canvas
    low, high = (float(canvas.min()), float(canvas.max())) if contrast else (0.0, 255.0)
    if high - low < FLAT_RANGE:
        low, high = 0.0, 255.0
    return np.clip(np.rint(255 * (canvas - low) / (high - low)), 0, 255).astype(np.uint8)
