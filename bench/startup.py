"""Start-up of Strata's page against onnxruntime-web with the full model, in real
headless Chromium on loopback: time to the first answer and to ready, cold and from a
warm cache, and the bytes each downloads.

Cold: a fresh browser context per run, nothing cached. Warm: one persistent profile,
loaded once to fill its caches (for Strata: the HTTP cache, Chromium's code cache and
the Python snapshot in Cache Storage), then loaded again per run. Times are from
navigation start (performance.now() in the page), medians over the runs: Strata's first
answer is a classify_sample(0) made as soon as the worker is ready and connected,
onnxruntime-web's its first inference (bench/grid/startup.py measures both, as the grid
does). Bytes are by kind (runtime: Pyodide, numpy, strata, the worker's Python; or
onnxruntime-web): "wire" is what crossed the network before the first answer
(compressed where the edge serves it so), "decoded" what the browser got. Strata's Python
snapshot, which a cold load fetches after its first answer, is its own kind.
"""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import sync_playwright

from bench.grid.startup import measure
from bench.ort_baseline import model_inputs
from edge_server.config import Settings
from testing.servers import edge_process


def _seconds(runs: list[dict], key: str) -> str:
    values = sorted(run[key] / 1000 for run in runs)
    return f"{values[len(values) // 2]:.2f} s ({values[0]:.2f}–{values[-1]:.2f})"


def main(runs: int, out: Path) -> int:
    inputs = model_inputs(Settings().models_dir)
    with edge_process() as (base, _), sync_playwright() as playwright:
        print(f"Start-up benchmark against {base}/, {runs} runs each", flush=True)
        result = measure(playwright, base, inputs, runs, lambda line: print(f"  {line}", flush=True))
    print("\n| page | cache | first answer, median (range) | ready, median (range) | runtime over the wire | "
          "runtime decoded | snapshot over the wire | all over the wire |")
    print("|---|---|---|---|---|---|---|---|")
    for page, measured in result.items():
        for cache in ("cold", "warm"):
            every, by_kind = measured["runs"][cache], measured[cache]["bytes"]
            wire = sum(k["wire"] for k in by_kind.values())
            print(f"| {page} | {cache} | {_seconds(every, 'first_answer_ms')} | {_seconds(every, 'ready_ms')} | "
                  f"{by_kind['runtime']['wire'] / 1e6:.2f} MB | {by_kind['runtime']['decoded'] / 1e6:.2f} MB | "
                  f"{by_kind['snapshot']['wire'] / 1e6:.2f} MB | {wire / 1e6:.2f} MB |")
    restored = [run.get("snapshot") for run in result["strata"]["runs"]["warm"]]
    print(f"\nStrata's warm loads restored the Python snapshot: {restored}")
    (out / "startup.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {out / 'startup.json'}")
    return 0
