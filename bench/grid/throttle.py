"""Does the device emulation slow the Web Worker, and by how much? Measured, not assumed.

Three fixed workloads run, each in its own page's worker: Strata's conv1 and bit-packed
branch (`bench_branch`: about 2 ms, as short as a request gets, and Python-heavy), the
float +-1 reference branch (about 25 ms), and the onnxruntime-web baseline's whole model
(bench/ort_baseline.py, a few ms, the baseline the grid compares with). Each is timed as
is; with CDP's Emulation.setCPUThrottlingRate on the page, as DevTools and Lighthouse
emulate a phone; and under bench/throttle.py at each rate. CDP is also asked to throttle
the worker's own target, which Chromium refuses.

bench/throttle.py slows different work differently (its stops cost a worker some speed
of their own, Python's more than onnxruntime's): at a nominal 6x, Strata's short
workload came out 8.4x. So calibrate() corrects each rate once, so that Strata's short
request and the baseline's come out, on average (geometric mean), at the rate asked
for, and measures all three again with the corrected rates: the grid runs its devices
with those and reports each workload's own slowdown, so that neither side is judged
on a device slower than the other's.
"""

from __future__ import annotations

import json
import time

from playwright.sync_api import Browser

from bench import ort_baseline
from bench.grid.page import StrataPage
from bench.throttle import slowed

CDP_RATE = 4


BASELINE_RUNS = 15


def _workloads(page: StrataPage, baseline) -> dict:
    """Per-sample ms of the short and the long workload (medians over 10 samples) and of
    the onnxruntime-web baseline (the median of BASELINE_RUNS runs, timed in its worker)."""
    result = page.call("bench_branch", 10, 3)
    runs = sorted(ort_baseline.classify(baseline, i)["ms"] for i in range(BASELINE_RUNS))
    return {"short_ms": result["conv1_ms"] + result["branch_ms"], "long_ms": result["branch_float_ms"],
            "baseline_ms": runs[len(runs) // 2]}


def _worker_target_answer(browser: Browser, page: StrataPage) -> str:
    """What CDP says when asked to throttle the worker's own target."""
    session = browser.new_browser_cdp_session()
    worker = next(t for t in session.send("Target.getTargets")["targetInfos"] if t["type"] == "worker")
    replies: list[dict] = []
    session.on("Target.receivedMessageFromTarget", lambda event: replies.append(json.loads(event["message"])))
    attached = session.send("Target.attachToTarget", {"targetId": worker["targetId"], "flatten": False})
    message = {"id": 1, "method": "Emulation.setCPUThrottlingRate", "params": {"rate": CDP_RATE}}
    session.send("Target.sendMessageToTarget", {"sessionId": attached["sessionId"], "message": json.dumps(message)})
    for _ in range(50):  # events arrive while Playwright is waiting on something
        if any(r.get("id") == 1 for r in replies):
            break
        page.page.wait_for_timeout(100)
    reply = next((r for r in replies if r.get("id") == 1), {})
    session.detach()
    return reply.get("error", {}).get("message") or ("accepted" if "result" in reply else "no answer")


def _under(page: StrataPage, baseline, params: dict[float, float], plain: dict) -> dict:
    """The workloads with bench/throttle.py at each device's parameter, and the slowdowns."""
    measured = {}
    for rate, param in params.items():
        with slowed(param):
            time.sleep(0.3)
            measured[f"{rate:g}"] = {"param": param, **_workloads(page, baseline)}
    return {rate: {**ms, **{f"slowdown_{kind}": ms[f"{kind}_ms"] / plain[f"{kind}_ms"]
                            for kind in ("short", "long", "baseline")}} for rate, ms in measured.items()}


def _alike(slowdowns: dict) -> float:
    """The slowdown Strata's short request and the baseline share: their geometric mean."""
    return (slowdowns["slowdown_short"] * slowdowns["slowdown_baseline"]) ** 0.5


def calibrate(browser: Browser, origin: str, rates: tuple[float, ...], inputs: ort_baseline.Inputs) -> dict:
    """The check, and the parameter bench/throttle.py needs for each device rate.
    `inputs`: our model's sample tensors, for the onnxruntime-web baseline's page."""
    context, baseline_context = browser.new_context(), browser.new_context()
    try:
        page = StrataPage(context, origin)
        baseline = ort_baseline.open_page(baseline_context, origin, inputs)
        _workloads(page, baseline)  # warm-up
        plain = _workloads(page, baseline)
        cdp = context.new_cdp_session(page.page)
        cdp.send("Emulation.setCPUThrottlingRate", {"rate": CDP_RATE})
        with_cdp = _workloads(page, baseline)
        cdp.send("Emulation.setCPUThrottlingRate", {"rate": 1})
        nominal = _under(page, baseline, {rate: rate for rate in rates}, plain)
        params = {rate: rate * rate / _alike(nominal[f"{rate:g}"]) for rate in rates}
        return {"workloads": "short = Strata's conv1 + bit-packed branch, long = its float +-1 branch (bench_branch, "
                             "in its worker), baseline = onnxruntime-web's whole model (in its own worker); ms per "
                             "sample", "plain": plain, f"cdp_{CDP_RATE}x_on_page": with_cdp,
                "cdp_on_worker_target": _worker_target_answer(browser, page), "nominal": nominal,
                "params": {f"{rate:g}": param for rate, param in params.items()},
                "calibrated": _under(page, baseline, params, plain)}
    finally:
        context.close()
        baseline_context.close()
