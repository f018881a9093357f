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
from strata.client.profile import bench_branch as run_bench_branch
from strata.client.transport import Transport
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
        self._proxies = []  # the last socket's callbacks, destroyed when the next one opens

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

        for proxy in self._proxies:
            proxy.destroy()
        self._proxies = [create_proxy(opening), create_proxy(message), create_proxy(closing)]
        socket.onopen, socket.onmessage, socket.onclose = self._proxies
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
            "plan": CLIENT.current_plan().to_header()}


def runtime_info():
    """What runs here, as proof that the answer came from Python inside the worker."""
    return {"python": sys.version.split()[0], "platform": sys.platform, "numpy": np.__version__,
            "strata": strata.__version__, "isolated": bool(js.crossOriginIsolated)}


def gallery(count):
    """The first `count` sample images as one uint8 buffer (count x rows x cols), and labels;
    none for a split model, whose samples are input tensors rather than pictures."""
    if CLIENT.model is None:
        return {"pixels": to_js(np.zeros(0, np.uint8)), "labels": [], "size": 0}
    images = np.ascontiguousarray(CLIENT.images[:count], dtype=np.uint8)
    return {"pixels": to_js(images.reshape(-1)), "labels": [int(v) for v in CLIENT.labels[:count]],
            "size": int(images.shape[-1])}


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


async def measure_rtt(count):
    """Median round-trip time of `count` small pings to the edge, in milliseconds."""
    return {"median_ms": await CLIENT.prober.measure_rtt(int(count)), "samples": int(count)}


def explain():
    return CLIENT.explain()


def bench_branch(count, repeats):
    return run_bench_branch(CLIENT.model, CLIENT.images, int(count), int(repeats))


# -- the page's own images (uploads, camera frames) and its start-up figures ---------------

def input_size():
    """[rows, cols] of the images the model takes raw (the manifest's input.raw_size), which
    the page fits uploads and camera frames into; None for a model made by `strata split`,
    which takes tensors rather than pictures."""
    raw = CLIENT.manifest["input"].get("raw_size")
    return None if raw is None else [int(v) for v in raw]


def _uint8_pixels(pixels):
    """Greyscale values 0..255 from the page, as a flat uint8 array: a list of numbers,
    bytes, or a JS typed array."""
    if hasattr(pixels, "to_py"):
        pixels = pixels.to_py()
    if isinstance(pixels, (bytes, bytearray, memoryview)):
        return np.frombuffer(bytes(pixels), dtype=np.uint8)
    values = np.asarray(list(pixels), dtype=np.float64)
    if values.size and not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 255):
        raise ValueError(f"pixels must be greyscale values in 0..255; got {values.min()} to {values.max()}")
    return np.rint(values).astype(np.uint8)


def classify_pixels(pixels, width, height):
    """One image the page made (an upload or a camera frame): `width` x `height` greyscale
    values 0..255, row by row, a light object on a dark background, at the model's raw size.
    Its first step, as classify_sample's; the answer has no index and truth."""
    rows, cols = input_size()
    if (int(height), int(width)) != (rows, cols):
        raise ValueError(f"expected a {cols}x{rows} image (the manifest's input.raw_size); got {width}x{height}")
    values = _uint8_pixels(pixels)
    if values.size != rows * cols:
        raise ValueError(f"expected {rows * cols} pixels for {cols}x{rows}; got {values.size}")
    return _next(CLIENT.begin(values.reshape(rows, cols).copy()), {})


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
