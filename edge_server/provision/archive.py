"""Zip archives written byte-for-byte reproducibly: sorted entries, fixed timestamps and
modes, so the same files always give the same bytes (and the same sha256, ETag and URL)."""

from __future__ import annotations

import io
import zipfile

EPOCH = (1980, 1, 1, 0, 0, 0)


def zip_bytes(entries: dict[str, bytes], deflate: bool) -> bytes:
    """A zip of `entries` (name -> bytes) in name order. Stored rather than deflated
    (`deflate` False) when the whole file is compressed on the wire anyway: brotli then
    compresses across files, which per-file deflate cannot."""
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, EPOCH)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            archive.writestr(info, entries[name])
    return buffer.getvalue()
