"""Build the pure-Python `strata` wheel that the browser worker unpacks into Pyodide.

The wheel holds shared/strata and nothing else: the worker needs no server code. It is
written byte-for-byte reproducibly (fixed timestamps, sorted entries), so its ETag only
changes when the code does.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path

import strata

SOURCE = Path(strata.__file__).resolve().parent
TAG = "py3-none-any"
EPOCH = (1980, 1, 1, 0, 0, 0)


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def wheel_bytes(version: str = strata.__version__) -> bytes:
    """The wheel's contents as bytes, built from the .py files of shared/strata."""
    dist_info = f"strata-{version}.dist-info"
    entries = {f"strata/{p.relative_to(SOURCE).as_posix()}": p.read_bytes()
               for p in sorted(SOURCE.rglob("*.py")) if "__pycache__" not in p.parts}
    entries[f"{dist_info}/METADATA"] = f"Metadata-Version: 2.1\nName: strata\nVersion: {version}\n".encode()
    entries[f"{dist_info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: strata\nRoot-Is-Purelib: true\nTag: {TAG}\n".encode())
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in entries.items())
    entries[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def build_strata_wheel(directory: Path) -> Path:
    """Write the wheel into `directory` if its bytes changed; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"strata-{strata.__version__}-{TAG}.whl"
    data = wheel_bytes()
    if not path.is_file() or path.read_bytes() != data:
        path.write_bytes(data)
    return path
