"""Static files with the two things the worker's runtime needs: compression and a cache policy.

The 10 MB wasm shrinks about 3x with gzip, 4.5x with brotli. Compressing it per request
would cost CPU on every cold load, so `strata provision` writes .br and .gz siblings once
and this class sends the first of them the client accepts: brotli, then gzip. (Chromium
offers `br` over HTTPS and to loopback addresses; measured: "gzip, deflate, br, zstd" to
http://127.0.0.1.) Path checks, ETags and 304s come from Starlette.
"""

from __future__ import annotations

import mimetypes
import os

from starlette.datastructures import Headers
from starlette.responses import FileResponse, Response
from starlette.staticfiles import NotModifiedResponse
from starlette.staticfiles import StaticFiles as StarletteStaticFiles
from starlette.types import Scope

mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("application/wasm", ".so")  # numpy's extension modules: Emscripten side modules, compiled streaming
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/x-python", ".py")
mimetypes.add_type("application/zip", ".whl")

IMMUTABLE = "public, max-age=31536000, immutable"  # for versioned paths such as /pyodide/0.27.7/
REVALIDATE = "no-cache"  # cache, but ask each time (ETag -> 304) for files that change with the code


ENCODINGS = [("br", ".br"), ("gzip", ".gz")]  # best first: (Content-Encoding, sibling suffix)


def accepts(accept_encoding: str, encoding: str) -> bool:
    """True if an Accept-Encoding header allows `encoding`, by name or else by `*`;
    `;q=0` (or a q that is not a number) refuses it."""
    weights: dict[str, float] = {}
    for part in accept_encoding.split(","):
        token, *params = [item.strip() for item in part.split(";")]
        q = next((p[2:] for p in params if p.lower().startswith("q=")), "1")
        try:
            weights.setdefault(token.lower(), float(q))
        except ValueError:
            weights.setdefault(token.lower(), 0.0)
    weight = weights.get(encoding, weights.get("*"))
    return weight is not None and weight > 0


class StaticFiles(StarletteStaticFiles):
    def __init__(self, *, directory: str | os.PathLike[str], cache_control: str, html: bool = False) -> None:
        super().__init__(directory=directory, html=html, check_dir=False)
        self.cache_control = cache_control

    def file_response(
        self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        request_headers = Headers(scope=scope)
        media_type = mimetypes.guess_type(str(full_path))[0] or "application/octet-stream"
        headers = {"Cache-Control": self.cache_control, "Vary": "Accept-Encoding"}
        accept_encoding = request_headers.get("accept-encoding", "")
        for encoding, suffix in ENCODINGS:
            compressed = f"{full_path}{suffix}"
            if accepts(accept_encoding, encoding) and os.path.isfile(compressed):
                full_path, stat_result = compressed, os.stat(compressed)
                headers["Content-Encoding"] = encoding
                break
        response = FileResponse(full_path, status_code, headers=headers, media_type=media_type, stat_result=stat_result)
        if self.is_not_modified(response.headers, request_headers):
            return NotModifiedResponse(response.headers)
        return response
