"""The browser bundle file: named numpy arrays plus a JSON description, in one blob.

Format, version 1 (all integers little-endian):

    bytes 0..7     magic b"STRATAB1"
    bytes 8..11    uint32 format version
    bytes 12..15   uint32 length L of the JSON header
    bytes 16..     JSON header (UTF-8), then zero bytes up to a multiple of 8
    then           the arrays' raw bytes, each starting at a multiple of 8

The header is {"model": {...}, "tensors": {name: {"dtype", "shape", "offset"}}}, where
offset counts from the start of the array data. numpy alone reads it (np.frombuffer).
It is one file rather than an .npz because the zip and .npy headers of an .npz would
cost a few kB, a real share of a bundle that must stay about 30x smaller than the
float model.

The manifest names the bundle's file and format version, and lists the sha256 of every
artifact; load_bundle refuses a bundle that does not match, so a stale or corrupted
download fails loudly.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass

import numpy as np

MAGIC = b"STRATAB1"
FORMAT_VERSION = 1
ALIGN = 8


class BundleError(ValueError):
    """A bundle that is corrupt, stale, or of a format this code does not read."""


@dataclass
class Bundle:
    model: dict  # the network structure: which tensors make which layer
    tensors: dict[str, np.ndarray]


def _pad(size: int) -> int:
    return -size % ALIGN


def write_bundle(model: dict, tensors: dict[str, np.ndarray]) -> bytes:
    """Serialize arrays (stored with the dtype they have) and the model description."""
    table, offset = {}, 0
    for name, array in tensors.items():
        table[name] = {"dtype": array.dtype.str, "shape": list(array.shape), "offset": offset}
        offset += array.nbytes + _pad(array.nbytes)
    header = json.dumps({"model": model, "tensors": table}, separators=(",", ":")).encode()
    parts = [MAGIC, struct.pack("<II", FORMAT_VERSION, len(header)), header, bytes(_pad(16 + len(header)))]
    for array in tensors.values():
        parts += [np.ascontiguousarray(array).tobytes(), bytes(_pad(array.nbytes))]
    return b"".join(parts)


def read_bundle(data: bytes) -> Bundle:
    """Parse a bundle without checking it against a manifest (see load_bundle)."""
    if data[:8] != MAGIC:
        raise BundleError(f"not a Strata browser bundle: expected magic {MAGIC!r}, got {bytes(data[:8])!r}")
    version, length = struct.unpack_from("<II", data, 8)
    if version != FORMAT_VERSION:
        raise BundleError(f"bundle format version {version}, but this code reads version {FORMAT_VERSION}")
    header = json.loads(bytes(data[16:16 + length]))
    start = 16 + length + _pad(16 + length)
    tensors = {}
    for name, entry in header["tensors"].items():
        dtype, shape = np.dtype(entry["dtype"]), tuple(entry["shape"])
        count = int(np.prod(shape))
        if start + entry["offset"] + count * dtype.itemsize > len(data):
            raise BundleError(f"bundle is truncated: tensor {name!r} runs past its end")
        tensors[name] = np.frombuffer(data, dtype, count, start + entry["offset"]).reshape(shape)
    return Bundle(header["model"], tensors)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_artifact(manifest: dict, name: str, files: dict[str, bytes]) -> bytes:
    """The bytes of artifact `name`, after checking them against the manifest's sha256."""
    if name not in files:
        raise BundleError(f"the manifest's file {name!r} was not provided (got {sorted(files)})")
    expected = manifest["artifacts"].get(name)
    digest = sha256(files[name])
    if digest != expected:
        raise BundleError(f"{name} has sha256 {digest}, but the manifest expects {expected}: "
                          "the download is corrupt or the file and manifest come from different exports")
    return files[name]


def attach_point(manifest: dict) -> int | None:
    """Where the manifest's browser bundle attaches its branch: the branch reads block K's
    input, after the device ran blocks [0, K); None for a model without a bundle. A bundle
    that holds conv1 itself (training/export.py) attaches after it, at 1; one that
    `strata branch` distilled says where ("attach")."""
    entry = manifest.get("browser_bundle")
    return None if entry is None else int(entry.get("attach", 1))


def load_bundle(manifest: dict, files: dict[str, bytes]) -> Bundle:
    """Verify the bundle bytes against the manifest (sha256, format version), then parse.

    `files` maps file names, as the manifest gives them, to the fetched bytes.
    """
    entry = manifest["browser_bundle"]
    if entry["format_version"] != FORMAT_VERSION:
        raise BundleError(f"the manifest describes bundle format version {entry['format_version']}, "
                          f"but this code reads version {FORMAT_VERSION}: update the page or re-export")
    return read_bundle(check_artifact(manifest, entry["file"], files))
