"""GET /joined/{start}-{stop}.onnx[?variant=p50]: blocks [start, stop) as one ONNX graph.

A call into onnxruntime-web has a fixed cost (about 0.4 ms in Chromium here, as much as
a small block's compute), so the browser runs consecutive device blocks as one graph in
one call (strata.device_route). Pyodide has no onnx package to join them, so the edge
joins the block files it serves (edge_server/blocks/graphs.py), on first request, and keeps
the last few. The response names the sha256 of every block file it joined: the worker
checks them against its own manifest, as it checks each block file it fetches.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from pathlib import Path

import onnx
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from edge_server.blocks.graphs import chain
from edge_server.blocks.main_path import ModelError
from edge_server.edge.static import REVALIDATE

KEPT = 4  # joined graphs held in memory (the device's prefix is usually one or two)
DIGESTS_HEADER = "X-Strata-Block-Sha256"  # comma-separated, one per block file, in order


@functools.lru_cache(maxsize=KEPT)
def _join(folder: Path, files: tuple[str, ...], modified: tuple[int, ...]) -> tuple[bytes, str, str]:
    """The joined graph's bytes, the block files' sha256s and an ETag; `modified` (the
    files' mtimes) is in the key only so that a re-exported model is joined again."""
    contents = [(folder / name).read_bytes() for name in files]
    digests = ",".join(hashlib.sha256(data).hexdigest() for data in contents)
    data = chain([onnx.load_from_string(data) for data in contents]).SerializeToString()
    return data, digests, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


async def joined(request: Request) -> Response:
    start, stop = request.path_params["start"], request.path_params["stop"]
    variant = request.query_params.get("variant", "")
    try:
        path = request.app.state.runtime.variants.get(variant)
    except (KeyError, ModelError) as exc:
        return PlainTextResponse(f"{exc.args[0]}; the model's manifest lists the variants served", 404)
    if not 0 <= start < stop <= len(path):
        return PlainTextResponse(f"blocks [{start}, {stop}) are not a range of this model's {len(path)} blocks; "
                                 f"expected 0 <= start < stop <= {len(path)}", 404)
    files = tuple(block["file"] for block in path.blocks[start:stop])
    modified = tuple((path.dir / name).stat().st_mtime_ns for name in files)
    data, digests, etag = await asyncio.to_thread(_join, path.dir, files, modified)
    headers = {"Cache-Control": REVALIDATE, "ETag": etag, DIGESTS_HEADER: digests}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="application/octet-stream", headers=headers)
