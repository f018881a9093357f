"""Fashion-MNIST from the Debian package: IDX reading, splits, and the shipped subset.

Splits are fixed by a seed: 55k images to train on, 5k held out for validation and
calibration, and the 10k test images kept for final figures only.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from strata.cli import CommandError

DATASET_DIR = Path("/usr/share/datasets/fashion-mnist")
INSTALL_HINT = (
    "Fashion-MNIST is not installed. Install it with `apt-get install -y dataset-fashion-mnist` "
    "(or `make dataset`), or pass --data DIR pointing at its four IDX .gz files."
)
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
VALIDATION_SIZE = 5000
SPLIT_SEED = 0


class DatasetMissing(CommandError, FileNotFoundError):
    """The IDX files are not where we looked."""


def read_idx(path: Path) -> np.ndarray:
    """Read one gzipped IDX file (the format MNIST-style datasets ship in)."""
    data = gzip.decompress(path.read_bytes())
    if data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_raw(split: str, root: Path = DATASET_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) of 'train' or 't10k'."""
    paths = [root / f"{split}-images-idx3-ubyte.gz", root / f"{split}-labels-idx1-ubyte.gz"]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetMissing(f"{missing[0]} not found. {INSTALL_HINT}")
    images, labels = (read_idx(p) for p in paths)
    return images, labels


@dataclass
class Splits:
    """Raw uint8 images (N, 28, 28) and labels for each split."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def load_splits(root: Path = DATASET_DIR) -> Splits:
    """The fixed train/validation split of the 60k images, plus the 10k test images."""
    images, labels = load_raw("train", root)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    val, train = order[:VALIDATION_SIZE], order[VALIDATION_SIZE:]
    test_x, test_y = load_raw("t10k", root)
    return Splits(images[train], labels[train], images[val], labels[val], test_x, test_y)


def subset(x: np.ndarray, y: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A class-balanced random subset: (images, labels, indices into x)."""
    rng = np.random.default_rng(seed)
    picks = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False)
                            for c in range(len(CLASSES))])
    picks = rng.permutation(picks)
    return x[picks], y[picks], picks
