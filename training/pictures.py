"""Unlabelled pictures for `strata branch`: a folder read, split by source, and augmented.

A picture is a file Pillow reads, anywhere under the folder. Pictures in one sub-folder
count as one source (e.g. one photo rotated and cropped several ways), pictures at the
top level each as their own: the held-out splits take whole sources, so no view of a
test picture, nor another picture of its source, is trained on.

Each picture gives `views` model inputs: the picture itself, then random crops (40-100 %
of its area, aspect 3:4 to 4:3), mirrored half the time, with small colour changes
(brightness, contrast and saturation each by up to +-15 %), seeded. A view becomes the
model's input by the manifest's own rule: strata.preprocess.picture_to_input for a model
`strata split` made, fit_picture and prepare for our Fashion-MNIST model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from strata.cli import CommandError
from strata.preprocess import InputError, fit_picture, picture_to_input, prepare

CROP_AREA = (0.4, 1.0)  # share of the picture a random crop keeps
CROP_ASPECT = (3 / 4, 4 / 3)
COLOUR = 0.15  # brightness, contrast and saturation change by a factor within 1 +- this
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class Picture:
    path: Path
    source: str  # the sub-folder it is in, or its own path at the top level
    pixels: np.ndarray  # uint8 (H, W, 3) RGB


def find_pictures(folder: Path) -> list[Path]:
    """Every file under `folder`, sorted; CommandError if there is none."""
    if not folder.is_dir():
        raise CommandError(f"--images {folder} is not a folder: give a folder of pictures (PNG, JPEG, ...)")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not paths:
        raise CommandError(f"--images {folder} holds no pictures: put PNG or JPEG files of the kind the model "
                           "will see there (sub-folders group pictures of one source)")
    return paths


def read_pictures(folder: Path) -> list[Picture]:
    """The folder's pictures, decoded to RGB; CommandError naming the first unreadable file."""
    from PIL import Image, UnidentifiedImageError

    pictures = []
    for path in find_pictures(folder):
        relative = path.relative_to(folder)
        try:
            with Image.open(path) as opened:
                pixels = np.asarray(opened.convert("RGB"), np.uint8)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise CommandError(f"--images: {path} is not a picture Pillow can read ({exc}); remove it or convert "
                               "it to PNG or JPEG") from None
        source = relative.parts[0] if len(relative.parts) > 1 else str(relative)
        pictures.append(Picture(path, source, pixels))
    return pictures


def split_sources(pictures: list[Picture], held_out: float, seed: int) -> dict[str, list[Picture]]:
    """"train", "calibration" and "test" pictures, by whole sources: each held-out split
    takes `held_out` of the sources (at least one). CommandError with fewer than 3 sources."""
    sources = sorted({p.source for p in pictures})
    if len(sources) < 3:
        raise CommandError(f"--images holds {len(sources)} source(s); the branch needs at least 3, one each to "
                           "train on, to calibrate its exit on and to test it on")
    order = [sources[i] for i in np.random.default_rng(seed).permutation(len(sources))]
    count = max(1, min(round(held_out * len(sources)), (len(sources) - 1) // 2))
    parts = {"test": set(order[:count]), "calibration": set(order[count:2 * count]), "train": set(order[2 * count:])}
    return {name: [p for p in pictures if p.source in chosen] for name, chosen in parts.items()}


def augment(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random view of a uint8 (H, W, 3) picture: crop, mirror, colour (module docstring)."""
    height, width = pixels.shape[:2]
    area = rng.uniform(*CROP_AREA) * height * width
    aspect = np.exp(rng.uniform(*np.log(CROP_ASPECT)))
    h = int(min(height, max(1, round(np.sqrt(area / aspect)))))
    w = int(min(width, max(1, round(np.sqrt(area * aspect)))))
    top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
    x = pixels[top:top + h, left:left + w].astype(np.float32)
    if rng.random() < 0.5:
        x = x[:, ::-1]
    brightness, contrast, saturation = rng.uniform(1 - COLOUR, 1 + COLOUR, 3)
    grey = x @ LUMA
    x = grey[..., None] + (x - grey[..., None]) * saturation
    x = grey.mean() + (x - grey.mean()) * contrast
    return np.ascontiguousarray(np.clip(np.rint(x * brightness), 0, 255).astype(np.uint8))


def views(picture: Picture, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The picture itself, then count - 1 random views of it."""
    return [picture.pixels] + [augment(picture.pixels, rng) for _ in range(count - 1)]


def input_rule(manifest: dict) -> Callable[[np.ndarray], np.ndarray]:
    """The function from one uint8 RGB picture to the model's per-sample input, by the
    manifest: input.preprocess (a model split made), or input.raw_size (ours)."""
    entry = manifest["input"]
    if "raw_size" in entry:
        rows, cols = entry["raw_size"]
        return lambda pixels: prepare(fit_picture(pixels, rows, cols)[None], entry["mean"], entry["std"])[0]

    def rule(pixels: np.ndarray) -> np.ndarray:
        try:
            return picture_to_input(pixels, entry)
        except InputError as exc:
            raise CommandError(f"the model's input cannot come from pictures: {exc}") from None

    return rule
