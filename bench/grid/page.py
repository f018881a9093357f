"""Strata's own page, driven from Playwright: load it, fix or free the plan, classify.

Everything goes through the worker's API (window.strata.callWorker), the same calls
the page makes; nothing here computes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from playwright.sync_api import BrowserContext, Page

CALL = "([method, args]) => window.strata.callWorker(method, ...args)"
# One classification timed in the page, from the call to the answer: what the page's user
# waits for, the worker's bridge included (onnxruntime-web's baseline is timed alike).
CLASSIFY = """async (index) => {
  const begin = performance.now();
  const answer = await window.strata.callWorker("classify_sample", index);
  return { ...answer, page_ms: performance.now() - begin };
}"""
# The same graph as classify's with every block on the device, called bare in the same
# worker (worker.js's bareOrt): the yardstick of Strata's own cost per request.
BARE = """async (index) => {
  const begin = performance.now();
  const answer = await window.strata.callWorker("bare_ort", index);
  return { ...answer, page_ms: performance.now() - begin };
}"""
READY = "body[data-ready=true]"
CONNECTED = "#edge-state[data-state=connected]"


class StrataPage:
    def __init__(self, context: BrowserContext, origin: str, timeout_s: float = 300) -> None:
        """Load the page and wait until its worker is ready and connected to the edge."""
        self.page: Page = context.new_page()
        self.page.goto(origin + "/")
        self.page.wait_for_selector(READY, state="attached", timeout=timeout_s * 1000)
        self.page.wait_for_selector(CONNECTED, state="attached", timeout=60_000)

    def call(self, method: str, *args: object) -> object:
        return self.page.evaluate(CALL, [method, list(args)])

    def set_plan(self, plan: dict | None) -> dict:
        """Fix the plan (a header dict: a, b, codec, branch), or None to follow the planner."""
        return self.call("set_plan", plan)

    def classify(self, index: int) -> dict:
        """The worker's answer, with `page_ms`: its time as the page saw it."""
        return self.page.evaluate(CLASSIFY, index)

    def bare(self, index: int) -> dict:
        """The current plan's onnxruntime-web graph called bare: {label, page_ms}."""
        return self.page.evaluate(BARE, index)

    def _explain_until(self, done: Callable[[dict], bool], timeout_s: float) -> tuple[dict, bool]:
        """Poll the worker's explain() until `done` holds for it: (the last state, whether it held)."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.call("explain")
            if done(state):
                return state, True
            if time.monotonic() > deadline:
                return state, False
            time.sleep(0.25)

    def wait_for_ort(self, timeout_s: float = 300) -> dict:
        """Once onnxruntime-web was asked for: wait until it is loaded and every block timed
        in it (or it failed); returns explain()['ort']."""
        def ort(state: dict) -> dict:
            return state.get("ort", {}) if state.get("ready") else {}

        state, _ = self._explain_until(lambda s: bool(ort(s).get("ready") or ort(s).get("error")), timeout_s)
        return ort(state)

    def wait_for_route(self, timeout_s: float = 120) -> bool:
        """Wait until the current plan's onnxruntime-web stretch runs as one joined graph
        (or joining failed), as it will from then on; False if time ran out."""
        _, held = self._explain_until(lambda s: not s.get("ready") or bool(s.get("route_ready")), timeout_s)
        return held

    def close(self) -> None:
        self.page.close()
