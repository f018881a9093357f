"""Start-up of the page in real headless Chromium: cold, then with a warm HTTP cache.

Cold: a fresh browser context per run, so nothing is cached. Warm: one persistent
profile, loaded once to fill its cache, then reloaded. The time is from navigation
start to the worker's ready state, as the page records it. Bytes are what crossed the
network (compressed) and what the browser decoded (raw).
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from playwright.sync_api import BrowserContext, Request, sync_playwright

from testing.chromium import ARGS, EXECUTABLE, launch
from testing.servers import edge_process

READY = "body[data-ready=true]"


def _load(context: BrowserContext, url: str) -> dict:
    """Load the page once; return ready time and bytes over the network and decoded."""
    finished = []

    def record(request: Request) -> None:
        finished.append(request)

    context.on("requestfinished", record)
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector(READY, timeout=120_000)
    ready_ms = float(page.get_attribute("body", "data-ready-ms"))
    wire = 0
    decoded: dict[str, int] = {}  # by URL: the worker's prefetch and Pyodide's own fetch share one
    for request in finished:
        response = request.response()
        if response is None:
            continue
        wire += max(request.sizes()["responseBodySize"], 0)
        if response.status == 200:
            decoded[request.url] = len(response.body())
    raw = sum(decoded.values())
    page.close()
    context.remove_listener("requestfinished", record)
    return {"ready_ms": ready_ms, "wire_bytes": wire, "raw_bytes": raw, "requests": len(finished)}


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def measure(url: str, runs: int) -> dict:
    with sync_playwright() as playwright:
        browser = launch(playwright)
        cold = []
        for i in range(runs):
            context = browser.new_context()
            cold.append(_load(context, url))
            context.close()
            print(f"  cold run {i + 1}/{runs}: {cold[-1]['ready_ms'] / 1000:.2f} s", flush=True)
        browser.close()
        warm = []
        with tempfile.TemporaryDirectory() as profile:
            context = playwright.chromium.launch_persistent_context(profile, executable_path=EXECUTABLE, args=ARGS)
            _load(context, url)  # fills the HTTP cache
            for i in range(runs):
                warm.append(_load(context, url))
                print(f"  warm run {i + 1}/{runs}: {warm[-1]['ready_ms'] / 1000:.2f} s", flush=True)
            context.close()
    summary = {
        name: {key: _median(results, key) for key in ("ready_ms", "wire_bytes", "raw_bytes", "requests")}
        for name, results in (("cold", cold), ("warm", warm))
    }
    return {"runs": runs, "median": summary, "cold": cold, "warm": warm}


def main(runs: int, out: Path) -> int:
    with edge_process() as (base, _):
        url = base + "/"
        print(f"Start-up benchmark against {url}, {runs} runs each", flush=True)
        result = measure(url, runs)
    print("\n| cache | ready (median) | over the network | decoded | requests |")
    print("|---|---|---|---|---|")
    for name, row in result["median"].items():
        print(f"| {name} | {row['ready_ms'] / 1000:.2f} s | {row['wire_bytes'] / 1e6:.2f} MB | "
              f"{row['raw_bytes'] / 1e6:.2f} MB | {row['requests']:.0f} |")
    (out / "startup.json").write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out / 'startup.json'}")
    return 0
