"""Does the device emulation slow the Web Worker, and by how much? Measured, not assumed.

On our model's page, two fixed workloads run in the worker (`bench_branch`): conv1 and
the bit-packed branch (about 2 ms, as short as a request gets) and the float +-1
reference branch (about 25 ms). Each is timed as is; with CDP's
Emulation.setCPUThrottlingRate on the page, as DevTools and Lighthouse emulate a phone;
and under bench/throttle.py at each rate. CDP is also asked to throttle the worker's own
target, which Chromium refuses.

calibrate() then corrects each rate once, so that the long workload comes out at the
rate asked for (the stops cost the worker some speed of their own: bench/throttle.py),
and measures again with the corrected rates: the grid runs its devices with those.
"""

from __future__ import annotations

import json
import time

from playwright.sync_api import Browser

from bench.grid.page import StrataPage
from bench.throttle import slowed

CDP_RATE = 4


def _workloads(page: StrataPage) -> dict:
    """Per-sample ms of the short and the long workload, medians over 10 samples."""
    result = page.call("bench_branch", 10, 3)
    return {"short_ms": result["conv1_ms"] + result["branch_ms"], "long_ms": result["branch_float_ms"]}


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


def _under(page: StrataPage, params: dict[float, float], plain: dict) -> dict:
    """The workloads with bench/throttle.py at each device's parameter, and the slowdowns."""
    measured = {}
    for rate, param in params.items():
        with slowed(param):
            time.sleep(0.3)
            measured[f"{rate:g}"] = {"param": param, **_workloads(page)}
    return {rate: {**ms, "slowdown_short": ms["short_ms"] / plain["short_ms"],
                   "slowdown_long": ms["long_ms"] / plain["long_ms"]} for rate, ms in measured.items()}


def calibrate(browser: Browser, origin: str, rates: tuple[float, ...]) -> dict:
    """The check, and the parameter bench/throttle.py needs for each device rate."""
    context = browser.new_context()
    try:
        page = StrataPage(context, origin)
        _workloads(page)  # warm-up
        plain = _workloads(page)
        cdp = context.new_cdp_session(page.page)
        cdp.send("Emulation.setCPUThrottlingRate", {"rate": CDP_RATE})
        with_cdp = _workloads(page)
        cdp.send("Emulation.setCPUThrottlingRate", {"rate": 1})
        nominal = _under(page, {rate: rate for rate in rates}, plain)
        params = {rate: rate * rate / nominal[f"{rate:g}"]["slowdown_long"] for rate in rates}
        return {"workloads": "in the worker (bench_branch): short = conv1 + bit-packed branch, long = float "
                             "+-1 branch; ms per sample", "plain": plain, f"cdp_{CDP_RATE}x_on_page": with_cdp,
                "cdp_on_worker_target": _worker_target_answer(browser, page), "nominal": nominal,
                "params": {f"{rate:g}": param for rate, param in params.items()},
                "calibrated": _under(page, params, plain)}
    finally:
        context.close()
