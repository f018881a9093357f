"""Files as the edge serves them: compressed siblings, content-addressed names, and
their entries in assets.json.

Each served file gets a .gz and a .br sibling, written once per content; the edge sends
the smallest one the client accepts (edge/static.py). Chromium sends `br` for HTTPS and
for loopback, gzip alone elsewhere.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable
from pathlib import Path

import brotli

from edge_server.provision import say

# Brotli's best quality for files made once per release; 9 (about 10x faster, 15 % larger
# on the snapshot) for a file remade whenever the code changes.
BROTLI_BEST = 11
BROTLI_FAST = 9


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _decodes_to(sibling: Path, decompress: Callable[[bytes], bytes], data: bytes) -> bool:
    try:
        return sibling.is_file() and decompress(sibling.read_bytes()) == data
    except (OSError, EOFError, gzip.BadGzipFile, brotli.error):
        return False


def compressed_siblings(path: Path, brotli_quality: int = BROTLI_BEST) -> tuple[int, int]:
    """Write path.gz and path.br unless they already decode to path's bytes (checking
    takes milliseconds, compressing the 10 MB wasm at brotli 11 about a minute); their
    sizes in bytes."""
    data = path.read_bytes()
    gz, br = path.with_name(path.name + ".gz"), path.with_name(path.name + ".br")
    if not _decodes_to(gz, gzip.decompress, data):
        gz.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    if not _decodes_to(br, brotli.decompress, data):
        if len(data) > 1_000_000:
            say(f"compressing {path.name} ({len(data) / 1e6:.1f} MB) at brotli {brotli_quality}, once per content")
        br.write_bytes(brotli.compress(data, quality=brotli_quality, lgwin=24))
    return gz.stat().st_size, br.stat().st_size


def asset(file: Path, url: str, brotli_quality: int = BROTLI_BEST, **extra: object) -> dict:
    """assets.json's entry for a served file: its URL, size, sha256 (the worker fetches it
    with that as its integrity) and compressed sizes (bytes), and `extra` fields."""
    gzip_bytes, br_bytes = compressed_siblings(file, brotli_quality)
    return {"url": url, "bytes": file.stat().st_size, "sha256": sha256(file), "gzip_bytes": gzip_bytes,
            "br_bytes": br_bytes, **extra}


def content_addressed(folder: Path, name: str, data: bytes) -> Path:
    """Write `data` as folder/STEM-HASH.SUFFIX (16 hex digits of its sha256), unless it
    is there: a URL that changes with the content can be cached as immutable."""
    stem, dot, suffix = name.partition(".")
    path = folder / f"{stem}-{hashlib.sha256(data).hexdigest()[:16]}{dot}{suffix}"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        partial.replace(path)  # never a half-written file under the final name
    return path


def remove_stale(folder: Path, keep: list[Path]) -> None:
    """Delete the files in `folder` other than `keep` and their compressed siblings."""
    kept = {name for path in keep for name in (path.name, path.name + ".gz", path.name + ".br")}
    for path in folder.iterdir():
        if path.is_file() and path.name not in kept:
            path.unlink()
