"""Time to the first answer from a cold and a warm load, and the bytes downloaded before it.

Strata: its page, until classify_sample(0) returns after the worker is ready. The
onnxruntime-web baseline: its page, until its first answer (bench/ort_baseline.py).
Cold: a fresh browser context, nothing cached. Warm: a persistent profile loaded once,
then loaded again. Times are from navigation start (performance.now() in the page).

Bytes are the responses that finished before the first answer, by what they are:
runtime (Pyodide, numpy and the strata wheel; onnxruntime-web's module and wasm),
model (manifest, bundle, block or full ONNX files), inputs (samples.npz, which Strata's
worker fetches as its gallery; the baseline's tensors come from the bench, not the
network) and page (HTML, JS, worker.py, assets.json). "wire" is what crossed the
network (gzip where the edge serves it), "decoded" the bytes the browser got.
"""

from __future__ import annotations

import statistics
import tempfile
from collections import defaultdict
from collections.abc import Callable
from urllib.parse import urlsplit

from playwright.sync_api import (
    BrowserContext,
    Error,
    Page,
    Playwright,
    Request,
    Response,
)

from bench import ort_baseline
from bench.grid.page import CALL, StrataPage
from testing.chromium import ARGS, EXECUTABLE, wait_for_cached_snapshot

KINDS = ("runtime", "snapshot", "model", "inputs", "page")
# The worker's own Python, served with the page but runtime all the same.
RUNTIME_FILES = ("/boot.mjs", "/worker.py", "/ort_web.py")


def kind(url: str) -> str:
    path = urlsplit(url).path
    if path.startswith("/runtime/snapshot-"):  # fetched after a cold load's first answer, for the next load
        return "snapshot"
    if path.startswith(("/pyodide/", "/runtime/", "/ort/")) or path in RUNTIME_FILES:
        return "runtime"
    if path.startswith("/models/"):
        return "inputs" if path.endswith("samples.npz") else "model"
    return "page"


class Bytes:
    """Responses a browser context received, by kind, from the moment it was created."""

    def __init__(self, context: BrowserContext) -> None:
        self.finished: list[Request] = []
        context.on("requestfinished", lambda request: self.finished.append(request))

    def count(self) -> dict:
        wire: dict[str, int] = defaultdict(int)
        decoded: dict[str, int] = {}  # by URL: Pyodide re-fetches what the worker prefetched
        for request in list(self.finished):
            response = request.response()
            if response is None or urlsplit(request.url).path.startswith(ort_baseline.PREFIX):
                continue
            wire[kind(request.url)] += max(request.sizes()["responseBodySize"], 0)
            if response.status == 200:
                decoded[request.url] = _decoded_size(response)
        by_kind = {k: {"wire": wire.get(k, 0), "decoded": 0} for k in KINDS}
        for url, size in decoded.items():
            by_kind[kind(url)]["decoded"] += size
        return by_kind


def _decoded_size(response: Response) -> int:
    """Bytes the browser decoded: the body's length when it was compressed (Chromium may
    have evicted a large body already: then 0), else its Content-Length."""
    headers = response.headers
    if "content-encoding" not in headers and "content-length" in headers:
        return int(headers["content-length"])
    try:
        return len(response.body())
    except Error:
        return 0


def strata_load(context: BrowserContext, origin: str) -> dict:
    """Load Strata's page in `context`: ready and first-answer times (ms from navigation
    start) and the bytes by kind."""
    bytes_ = Bytes(context)
    page = StrataPage(context, origin)
    first = page.page.evaluate(f"async () => {{ await ({CALL})(['classify_sample', [0]]); return performance.now(); }}")
    ready = float(page.page.get_attribute("body", "data-ready-ms"))
    result = {"ready_ms": ready, "first_answer_ms": first, "bytes": bytes_.count(),
              "snapshot": page.page.get_attribute("body", "data-snapshot") == "true"}
    wait_for_cached_snapshot(page.page)  # for the next load in this context, after the timing
    page.close()
    return result


def _ort(context: BrowserContext, origin: str, inputs: ort_baseline.Inputs) -> dict:
    bytes_ = Bytes(context)
    page: Page = ort_baseline.open_page(context, origin, inputs)
    result = {"ready_ms": float(page.get_attribute("body", "data-ready-ms")),
              "first_answer_ms": float(page.get_attribute("body", "data-first-answer-ms")), "bytes": bytes_.count()}
    page.close()
    return result


def cold_and_warm(playwright: Playwright, load: Callable[[BrowserContext], dict], runs: int,
                  log: Callable[[str], None], label: str) -> dict:
    """`load` (which returns ready_ms, first_answer_ms and bytes) `runs` times in fresh
    contexts, then `runs` times from a warm persistent profile: medians and every run."""
    browser = playwright.chromium.launch(executable_path=EXECUTABLE, args=ARGS)
    cold = []
    for _ in range(runs):
        context = browser.new_context()
        cold.append(load(context))
        context.close()
        log(f"{label} cold: first answer at {cold[-1]['first_answer_ms'] / 1000:.2f} s")
    browser.close()
    warm = []
    with tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(profile, executable_path=EXECUTABLE, args=ARGS)
        load(context)  # fills the HTTP cache
        for _ in range(runs):
            warm.append(load(context))
            log(f"{label} warm: first answer at {warm[-1]['first_answer_ms'] / 1000:.2f} s")
        context.close()
    return {"cold": _median(cold), "warm": _median(warm), "runs": {"cold": cold, "warm": warm}}


def _median(runs: list[dict]) -> dict:
    return {"ready_ms": statistics.median(r["ready_ms"] for r in runs),
            "first_answer_ms": statistics.median(r["first_answer_ms"] for r in runs),
            "bytes": runs[0]["bytes"]}


def measure(playwright: Playwright, origin: str, inputs: ort_baseline.Inputs, runs: int,
            log: Callable[[str], None]) -> dict:
    """Strata and the onnxruntime-web baseline, cold and warm, on this machine's full CPU."""
    return {"strata": cold_and_warm(playwright, lambda c: strata_load(c, origin), runs, log, "Strata"),
            "onnxruntime-web": cold_and_warm(playwright, lambda c: _ort(c, origin, inputs), runs, log,
                                              "onnxruntime-web")}
