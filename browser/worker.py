"""Python in the browser's Web Worker: the browser's transport for strata.client, and the
functions worker.js calls.

The client runtime (strata.client: plan, classify, fall back, probe, learn) is the same
one CPython runs. This file only wires it to the browser: the JS WebSocket, fetch,
onnxruntime-web (ort_web.py, which worker.js writes next to this file) and postMessage
to the page. worker.js calls the functions below `CLIENT`; each returns plain data.
"""

import asyncio
import sys

import js
import numpy as np
from ort_web import OrtWeb
from pyodide.ffi import create_proxy, to_js
from pyodide.http import pyfetch

import strata
from strata.client import Client
from strata.client.pictures import as_picture, describe, picture_input, rgba, thumbnail
from strata.client.profile import bench_branch as run_bench_branch
from strata.client.transport import Transport
from strata.device import model_input
from strata.plan import Plan
from strata.planner import Goal


class _JsSocket:
    def __init__(self, socket):
        self.socket = socket

    async def send(self, data):
        if self.socket.readyState != js.WebSocket.OPEN:
            raise ConnectionError("the WebSocket to the edge is not open")
        self.socket.send(to_js(data))

    def close(self):
        self.socket.close()


class BrowserTransport(Transport):
    """The JS WebSocket, fetch on the page's origin, onnxruntime-web and postMessage."""

    def __init__(self):
        self._socket = None  # the last socket opened
        self._proxies = []  # its callbacks, destroyed when the next one opens

    async def open(self, url, on_message, on_close):
        opened = asyncio.get_running_loop().create_future()
        socket = js.WebSocket.new(url)
        socket.binaryType = "arraybuffer"

        def opening(event):
            opened.done() or opened.set_result(True)

        def message(event):
            on_message(bytes(event.data.to_py()))

        def closing(event):
            if not opened.done():
                opened.set_exception(ConnectionError(f"cannot reach {url}"))
            else:
                on_close(f"code {event.code}{': ' + event.reason if event.reason else ''}")

        if self._socket is not None:  # a socket still closing (a reconnection) must not call its destroyed callbacks
            self._socket.onopen = self._socket.onmessage = self._socket.onclose = None
        for proxy in self._proxies:
            proxy.destroy()
        self._proxies = [create_proxy(opening), create_proxy(message), create_proxy(closing)]
        socket.onopen, socket.onmessage, socket.onclose = self._proxies
        self._socket = socket
        await opened
        return _JsSocket(socket)

    async def fetch(self, path):
        response = await pyfetch(path)
        if not response.ok:
            raise RuntimeError(f"{path}: HTTP {response.status}: {(await response.string())[:200]}")
        return await response.bytes(), {name.lower(): value for name, value in response.headers.items()}

    async def float_executor(self, assets):
        return await OrtWeb.load(assets["base_url"], assets["module"])

    def notify(self, kind, data):
        js.postMessage(to_js({"type": kind, **data}, dict_converter=js.Object.fromEntries))


CLIENT = None
THUMBNAIL_PX = 96  # the gallery's pictures, longer side: small to send, sharp enough at the page's tile size
MAX_PICTURE_PX = 4096  # longest side of a picture the page may send (it sends at most 512)


async def load_model(ws_url):
    """Fetch and verify the model, start the edge link and the probes (the first of which
    profiles this device)."""
    global CLIENT
    CLIENT = await Client.load(BrowserTransport(), ws_url)
    CLIENT.start()
    manifest = CLIENT.manifest
    return {"blocks": CLIENT.blocks, "classes": CLIENT.classes, "samples": len(CLIENT.labels),
            "block_names": [block["name"] for block in manifest["blocks"]],
            "bundle_bytes": manifest.get("browser_bundle", {}).get("bytes", 0),
            "plan": CLIENT.current_plan().to_header(), "about": describe(manifest)}


def runtime_info():
    """What runs here, as proof that the answer came from Python inside the worker."""
    return {"python": sys.version.split()[0], "platform": sys.platform, "numpy": np.__version__,
            "strata": strata.__version__, "isolated": bool(js.crossOriginIsolated)}


def _pictures_for_page(pictures):
    """uint8 (N, H, W, 3) pictures as one flat RGBA buffer for canvases, with their size."""
    return {"pixels": to_js(rgba(pictures).reshape(-1)), "rows": int(pictures.shape[1]),
            "cols": int(pictures.shape[2])}


def gallery(count):
    """The first `count` samples as pictures (RGBA, at most THUMBNAIL_PX a side), their
    labels (-1: none) and names; no pixels for a model whose input is not a picture."""
    manifest, count = CLIENT.manifest, min(int(count), len(CLIENT.labels))
    sources = manifest["samples"].get("sources", []) if isinstance(manifest.get("samples"), dict) else []
    out = {"labels": [int(v) for v in CLIENT.labels[:count]],
           "names": [sources[i] if i < len(sources) else f"sample {i}" for i in range(count)]}
    pictures = [as_picture(manifest, sample) for sample in CLIENT.images[:count]]
    if count and pictures[0] is not None:
        out.update(_pictures_for_page(np.stack([thumbnail(picture, THUMBNAIL_PX) for picture in pictures])))
    return out


def set_plan(plan):
    """Fix the plan from the page (a dict), or hand the choice back to the planner (None)."""
    return CLIENT.set_plan(None if plan is None else Plan.from_header(plan, CLIENT.blocks)).to_header()


def set_goal(kind, budget_ms=None, privacy=False, variants=None):
    """The user's goal; `variants` limits the model variants offered to the planner."""
    offered = None if variants is None else {str(name) for name in variants}
    return CLIENT.set_goal(Goal(kind, budget_ms, bool(privacy)), offered).to_header()


def set_probe_period(seconds):
    return CLIENT.prober.set_period(float(seconds))


# -- one request: worker.js drives it (see classify() there) -----------------------------
STEPS = {}  # request id -> (a step waiting for worker.js, fields its answer adds)


def _next(step, extra):
    """What worker.js does next with a step: show the answer; await the promise of the one
    call the device makes into onnxruntime-web, then resume(); or await finish()."""
    if step.classified is not None:
        return to_js({"answer": {**step.classified.to_dict(), **extra}}, dict_converter=js.Object.fromEntries)
    STEPS[step.request_id] = step, extra
    if step.stretch is not None:
        return to_js({"id": step.request_id, "run": step.stretch.session.submit(step.stretch.x)},
                     dict_converter=js.Object.fromEntries)
    return to_js({"id": step.request_id}, dict_converter=js.Object.fromEntries)


def classify_sample(index):
    """A shipped sample, by index: the first step of its request (see _next)."""
    index = int(index)
    return _next(CLIENT.begin(CLIENT.images[index]), {"index": index, "truth": int(CLIENT.labels[index])})


def resume(request_id, outputs):
    """onnxruntime-web's outputs for a step's run: the request's next step."""
    step, extra = STEPS.pop(int(request_id))
    return _next(CLIENT.resume(step, step.stretch.session.collect(outputs)), extra)


async def finish(request_id):
    """The rest of a request that waits on the network or on loading: its answer."""
    step, extra = STEPS.pop(int(request_id))
    return {**(await CLIENT.complete(step)).to_dict(), **extra}


def explain():
    return CLIENT.explain()


def bare_graph():
    """For the grid's measure of Strata's own cost per request: the onnxruntime-web session
    the current plan runs all of its device blocks in (one joined graph, none in numpy),
    and every shipped sample as that graph's input, for worker.js to call bare. ValueError
    if the current plan does not run its device share that way."""
    plan = CLIENT.current_plan()
    route = CLIENT.route(plan)
    device_blocks = CLIENT.device(plan.variant)
    if plan.branch or [(s.executor, s.start, s.stop) for s in route] != [("ort", 0, plan.a)] or device_blocks.ort is None:
        raise ValueError(f"the plan {plan.to_header()} does not run its device blocks as one onnxruntime-web graph "
                         f"from block 0 (route {route})")
    session = device_blocks.run_ready(np.zeros(0), route)[1] if route else None
    if session is None:
        raise ValueError(f"blocks [0, {plan.a}) have no joined graph yet")
    inputs = np.ascontiguousarray(model_input(CLIENT.model, CLIENT.images), np.float32)
    return {"ort": device_blocks.ort.ort, "session": session.session, "input": session.input, "output": session.output,
            "inputs": to_js(inputs.ravel()), "shape": to_js([1, *inputs.shape[1:]])}


def bench_branch(count, repeats):
    return run_bench_branch(CLIENT.model, CLIENT.images, int(count), int(repeats))


# -- the page's own pictures (uploads, camera frames) and its start-up figures -------------

def _picture(pixels, width, height):
    """The page's canvas pixels (a JS Uint8ClampedArray or Uint8Array, or bytes), RGBA row
    by row, as uint8 (height, width, 4); ValueError saying what was expected otherwise."""
    width, height = int(width), int(height)
    if not (0 < width <= MAX_PICTURE_PX and 0 < height <= MAX_PICTURE_PX):
        raise ValueError(f"a picture must be 1 to {MAX_PICTURE_PX} pixels a side; got {width}x{height}")
    if hasattr(pixels, "to_bytes"):  # a JS typed array
        pixels = pixels.to_bytes()
    if not isinstance(pixels, (bytes, bytearray, memoryview)):
        raise ValueError(f"expected the canvas's RGBA bytes (a Uint8ClampedArray); got {type(pixels).__name__}")
    values = np.frombuffer(pixels, dtype=np.uint8)
    if values.size != width * height * 4:
        raise ValueError(f"expected {width}x{height} RGBA pixels ({width * height * 4} bytes); got {values.size} bytes")
    return values.reshape(height, width, 4)


def classify_picture(pixels, width, height, invert=None, contrast=True):
    """A photo from the page (an upload or a camera frame, RGBA), turned into the model's
    input here by the model's one rule (strata.client.pictures.picture_input). Its first
    step, as classify_sample's; the answer has no index and truth, but `seen` (the input as
    the picture the model sees: RGBA, its size) and `inverted`."""
    x, inverted = picture_input(CLIENT.manifest, _picture(pixels, width, height),
                                None if invert is None else bool(invert), bool(contrast))
    seen = as_picture(CLIENT.manifest, x)
    return _next(CLIENT.begin(x), {"inverted": inverted, "seen": None if seen is None else _pictures_for_page(seen[None])})


def load_transfer():
    """What this worker's downloads cost on the network so far, from the browser's Resource
    Timing, for the page to tell a cold load from a warm one. Each URL counts once, by its
    first fetch. transferSize is 0 when the cache answered and only the headers
    for a 304, so a warm load moves a small fraction of the encoded bytes, a cold one all."""
    first = {}
    for entry in js.performance.getEntriesByType("resource"):
        first.setdefault(entry.name, entry)
    entries = list(first.values())
    return {"resources": len(entries), "from_cache": sum(1 for e in entries if e.transferSize == 0),
            "transfer_bytes": int(sum(e.transferSize for e in entries)),
            "encoded_bytes": int(sum(e.encodedBodySize for e in entries)),
            "decoded_bytes": int(sum(e.decodedBodySize for e in entries))}
