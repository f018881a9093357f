"""The binary branch in Chromium's worker: bit-packed XNOR-popcount against float +-1 matmuls.

Both run in Pyodide's numpy inside the real page's Web Worker, on the same conv1 outputs
of shipped test images; times are per sample (batch 1), medians.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from playwright.sync_api import sync_playwright

from testing.chromium import launch
from testing.servers import edge_process


def main(runs: int, out: Path) -> int:
    results = []
    with edge_process() as (url, _), sync_playwright() as playwright:
        browser = launch(playwright)
        for run in range(runs):
            page = browser.new_page()
            page.goto(url + "/")
            page.wait_for_selector("body[data-ready=true]", timeout=120_000)
            results.append(page.evaluate("window.strata.callWorker('bench_branch', 20, 5)"))
            row = results[-1]
            print(f"  run {run + 1}/{runs}: conv1 {row['conv1_ms']:.2f} ms, branch {row['branch_ms']:.2f} ms, "
                  f"float reference {row['branch_float_ms']:.2f} ms", flush=True)
            page.close()
        browser.close()
    summary = {key: statistics.median(r[key] for r in results) for key in ("conv1_ms", "branch_ms", "branch_float_ms")}
    summary["speedup"] = summary["branch_float_ms"] / summary["branch_ms"]
    summary["agree"] = all(r["agree"] for r in results)
    print(f"\nbit-packed branch {summary['branch_ms']:.2f} ms, float +-1 branch {summary['branch_float_ms']:.2f} ms: "
          f"{summary['speedup']:.1f}x; conv1 + branch {summary['conv1_ms'] + summary['branch_ms']:.2f} ms per sample")
    (out / "branch.json").write_text(json.dumps({"runs": runs, "median": summary, "trials": results}, indent=1))
    return 0
