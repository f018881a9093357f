"""IDX reading, the fixed splits' contract, and the message when the dataset is missing."""

import gzip

import numpy as np
import pytest

from training.data import DatasetMissing, load_raw, read_idx, subset


def test_read_idx_parses_header_and_shape(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in images.shape)
    path = tmp_path / "x-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header + images.tobytes()))
    assert np.array_equal(read_idx(path), images)


def test_missing_dataset_says_how_to_install_it(tmp_path):
    with pytest.raises(DatasetMissing, match="apt-get install -y dataset-fashion-mnist.*make dataset"):
        load_raw("train", tmp_path)


def test_subset_is_class_balanced_and_seeded():
    labels = np.repeat(np.arange(10), 7)
    images = np.arange(70)
    x, y, picks = subset(images, labels, 3, seed=5)
    assert np.bincount(y).tolist() == [3] * 10 and np.array_equal(images[picks], x)
    assert np.array_equal(subset(images, labels, 3, seed=5)[2], picks)
