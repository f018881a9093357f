"""The pure-Python `strata` package as the browser gets it: its files (the worker's
site-packages archive holds them, python_files.py), or a wheel of them (the tests install
it in Pyodide under Node).

Only shared/strata: the worker needs no server code. The wheel is written byte-for-byte
reproducibly (archive.py).
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import strata

from edge_server.provision.archive import zip_bytes

SOURCE = Path(strata.__file__).resolve().parent
TAG = "py3-none-any"


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def package_files() -> dict[str, bytes]:
    """The .py files of shared/strata, by their path in site-packages (strata/...)."""
    return {f"strata/{p.relative_to(SOURCE).as_posix()}": p.read_bytes()
            for p in sorted(SOURCE.rglob("*.py")) if "__pycache__" not in p.parts}


def wheel_bytes(version: str = strata.__version__) -> bytes:
    """The wheel's contents as bytes, built from the .py files of shared/strata."""
    dist_info = f"strata-{version}.dist-info"
    entries = package_files()
    entries[f"{dist_info}/METADATA"] = f"Metadata-Version: 2.1\nName: strata\nVersion: {version}\n".encode()
    entries[f"{dist_info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: strata\nRoot-Is-Purelib: true\nTag: {TAG}\n".encode())
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in entries.items())
    entries[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    return zip_bytes(entries, deflate=True)
