"""The bundle format: round trip, and refusal of stale or corrupt bundles."""

import json
from pathlib import Path

import numpy as np
import pytest

from strata.bundle import FORMAT_VERSION, BundleError, load_bundle, read_bundle, sha256, write_bundle

MODELS = Path(__file__).resolve().parents[2] / "models"


def small_bundle():
    tensors = {"a": np.arange(5, dtype=np.float16), "b": np.arange(6, dtype=np.int16).reshape(2, 3),
               "bits": np.array([1, 2, 3], np.uint8)}
    data = write_bundle({"layers": ["a", "b"]}, tensors)
    manifest = {"browser_bundle": {"file": "x.bin", "format_version": FORMAT_VERSION},
                "artifacts": {"x.bin": sha256(data)}}
    return tensors, data, manifest


def test_round_trip_keeps_dtypes_shapes_and_alignment():
    tensors, data, manifest = small_bundle()
    bundle = load_bundle(manifest, {"x.bin": data})
    assert bundle.model == {"layers": ["a", "b"]}
    for name, array in tensors.items():
        assert bundle.tensors[name].dtype == array.dtype and np.array_equal(bundle.tensors[name], array)
        assert (np.frombuffer(data, np.uint8).ctypes.data - bundle.tensors[name].ctypes.data) % 8 == 0


def test_sha256_mismatch_is_refused():
    _, data, manifest = small_bundle()
    corrupt = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(BundleError, match="sha256.*corrupt"):
        load_bundle(manifest, {"x.bin": corrupt})


def test_format_version_mismatch_is_refused():
    _, data, manifest = small_bundle()
    manifest["browser_bundle"]["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(BundleError, match="format version"):
        load_bundle(manifest, {"x.bin": data})
    newer = data[:8] + (FORMAT_VERSION + 1).to_bytes(4, "little") + data[12:]
    with pytest.raises(BundleError, match=f"version {FORMAT_VERSION + 1}"):
        read_bundle(newer)


def test_missing_file_bad_magic_and_truncation_are_refused():
    _, data, manifest = small_bundle()
    with pytest.raises(BundleError, match="was not provided"):
        load_bundle(manifest, {})
    with pytest.raises(BundleError, match="magic"):
        read_bundle(b"PK" + data[2:])
    with pytest.raises(BundleError, match="truncated"):
        read_bundle(data[:-8])


def test_committed_bundle_matches_committed_manifest():
    manifest = json.loads((MODELS / "manifest.json").read_text())
    entry = manifest["browser_bundle"]
    data = (MODELS / entry["file"]).read_bytes()
    bundle = load_bundle(manifest, {entry["file"]: data})
    assert len(data) == entry["bytes"]
    assert [layer["cout"] for layer in bundle.model["binary"]] == [b["output_shape"][0] for b in manifest["blocks"][1:-1]]
