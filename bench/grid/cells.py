"""One model on one device over every link: each strategy of the grid, measured in Chromium.

Per device, in a fresh browser context held to the device's speed (bench/throttle.py):

1. what does not depend on the link, measured once over wifi: the onnxruntime-web
   baseline page (bench/ort_baseline.py); for our model, Strata with its numpy executor
   alone (onnxruntime-web blocked); Strata's page with every block on the device;
2. then per link (4g first, where the Neurosurgeon cut is chosen): all at the edge and
   all in the cloud (input uploaded as f16), the Neurosurgeon cut, the oracle's other
   candidates, and Strata adaptive (the planner, goal latency), after which the plan
   it used most is also measured as a fixed plan, so the oracle is never worse than it.

Candidates that cannot beat the best plan measured so far are skipped: their network
floor (RTT and serialisation of bytes known in advance, per the emulator's profile)
plus 0.8 x the device time the worker measured for their device blocks already exceeds
that plan's median. The named strategies are always measured.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from playwright.sync_api import Browser, Error
from strata.codecs import encoded_bytes

from bench import ort_baseline
from bench.grid.page import StrataPage
from bench.grid.stats import from_ort, from_strata, plan_key, summarize
from edge_server.link_emulator.proxy import PROFILES

EDGE_CLOUD = PROFILES["edge-cloud"]
DEVICE_MARGIN = 0.8  # how much of the worker's own block times a lower bound trusts
FRAME_BYTES = 200  # INFER/RESULT header, roughly (as strata.context assumes)
NUMPY, ORT_WEB, EDGE, CLOUD, NEUROSURGEON, ORACLE, ADAPTIVE = (
    "numpy in the browser", "onnxruntime-web in the browser", "all at the edge", "all in the cloud",
    "Neurosurgeon (4g cut)", "oracle", "Strata adaptive")
STRATEGIES = (NUMPY, ORT_WEB, EDGE, CLOUD, NEUROSURGEON, ORACLE, ADAPTIVE)


@dataclass(frozen=True)
class Budget:
    """How many requests a measurement gets: enough to fill `seconds`, within [least, most]."""

    seconds: float
    least: int
    most: int

    def count(self, first_ms: float) -> int:
        return max(self.least, min(self.most, round(self.seconds * 1000 / max(first_ms, 1e-3))))


@dataclass(frozen=True)
class Config:
    links: tuple[str, ...] = ("4g", "wifi", "3g")
    strategies: tuple[str, ...] = STRATEGIES
    fixed: Budget = Budget(1.5, 3, 12)
    adaptive: Budget = Budget(4.0, 6, 20)
    overhead: Budget = Budget(3.0, 10, 40)  # pairs of requests for Strata's own cost per request
    settle_s: float = 4.0  # from a link change to the adaptive run: the probes need a few rounds
    # Idle time between two requests, for every strategy: a device classifying frames as
    # they come rather than flat out. Under bench/throttle.py it also keeps one request's
    # CPU debt (its worker's bookkeeping after the timed part) from being paid inside the
    # next request's time.
    gap_s: float = 0.03
    search: bool = True  # look for the oracle beyond the named strategies


@dataclass
class Model:
    name: str
    manifest: dict
    inputs: ort_baseline.Inputs

    @property
    def blocks(self) -> int:
        return len(self.manifest["blocks"])

    @property
    def bundle(self) -> bool:
        return "browser_bundle" in self.manifest

    def cut_shape(self, k: int) -> list[int]:
        blocks = self.manifest["blocks"]
        return blocks[k]["input_shape"] if k < self.blocks else blocks[-1]["output_shape"]


def plan(a: int, b: int, codec: str = "f16", branch: bool = False) -> dict:
    return {"a": a, "b": b, "codec": codec, "branch": branch}


def all_browser(model: Model, branch: bool = False) -> dict:
    return plan(model.blocks, model.blocks, "f32", branch)


def candidates(model: Model) -> list[dict]:
    """The oracle's fixed plans per link: browser|edge cuts with a light and a compact codec,
    all in the cloud, and for our model the branch with the rest at the edge or in the cloud."""
    n = model.blocks
    plans = [plan(a, n, codec) for a in range(n) for codec in ("f16", "i8c+z")] + [plan(0, 0)]
    if model.bundle:
        plans += [plan(1, n, "f16", True), plan(1, n, "i8c+z", True), plan(1, 1, "i8c+z", True)]
    return plans


def floor_ms(model: Model, p: dict, link: str, device_ms: list[float]) -> float:
    """A lower bound on a plan's median latency (see the module docstring); 0 with the branch,
    whose median may be an exit."""
    if p["branch"]:
        return 0.0
    bound = DEVICE_MARGIN * sum(device_ms[:p["a"]])
    if p["a"] == model.blocks:
        return bound
    profile = PROFILES[link]
    up = 0 if p["codec"].endswith("+z") else encoded_bytes(p["codec"], model.cut_shape(p["a"])) + FRAME_BYTES
    down = encoded_bytes("f32", model.cut_shape(model.blocks)) + FRAME_BYTES
    bound += 1000 * (profile.up.delay_s + profile.down.delay_s + 8 * up / profile.up.rate_bps
                     + 8 * down / profile.down.rate_bps)
    if p["b"] < model.blocks:
        bound += 1000 * (EDGE_CLOUD.up.delay_s + EDGE_CLOUD.down.delay_s)
    return bound


def run(classify: Callable[[int], dict], budget: Budget, samples: int, gap_s: float) -> list[dict]:
    """Requests on samples 0, 1, 2, ... (round the `samples` shipped), `gap_s` apart: as
    many as the budget allows at the first one's speed."""
    records = [classify(0)]
    for i in range(1, budget.count(records[0]["ms"])):
        time.sleep(gap_s)
        records.append(classify(i % samples))
    return records


@dataclass
class Device:
    """Everything measured on one device: link-independent results, then cells per link."""

    model: Model
    rate: float
    origin: str
    control: str
    config: Config
    log: Callable[[str], None]
    baselines: dict = field(default_factory=dict)  # strategy -> summary: onnxruntime-web, numpy; no link involved
    local: dict = field(default_factory=dict)  # plan key -> summary of the plans with every block on the device
    neurosurgeon: dict | None = None
    overhead: dict = field(default_factory=dict)  # Strata's own cost per request, see _overhead()
    device_ms: list[float] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return len(self.model.inputs.labels)

    def measure(self, browser: Browser) -> dict:
        self._set_link("wifi")
        if ORT_WEB in self.config.strategies:
            self._ort_web(browser)
        if NUMPY in self.config.strategies and self.model.bundle:
            self._numpy(browser)
        context = browser.new_context()
        try:
            page = StrataPage(context, self.origin)
            cells = self._strata(page)
        finally:
            context.close()
        return {"rate": self.rate, "baselines": self.baselines, "local": self.local, "overhead": self.overhead,
                "neurosurgeon": self.neurosurgeon, "device_block_ms": self.device_ms, "cells": cells}

    # -- link-independent --------------------------------------------------------------
    def _ort_web(self, browser: Browser) -> None:
        context = browser.new_context()
        try:
            inputs = self.model.inputs
            page = ort_baseline.open_page(context, self.origin, inputs)
            labels = inputs.labels
            records = run(lambda i: from_ort(ort_baseline.classify(page, i), int(labels[i])),
                          self.config.fixed, self.samples, self.config.gap_s)
            self.baselines[ORT_WEB] = self._done(ORT_WEB, records)
        finally:
            context.close()

    def _numpy(self, browser: Browser) -> None:
        """Strata with onnxruntime-web blocked: every block in Pyodide's numpy."""
        context = browser.new_context()
        try:
            context.route("**/ort/**", lambda route: route.abort())
            page = StrataPage(context, self.origin)
            page.set_plan(all_browser(self.model))
            page.wait_for_ort()
            page.classify(0)  # the first request fetches and verifies the blocks: not what is measured
            records = run(lambda i: from_strata(page.classify(i)), self.config.fixed, self.samples, self.config.gap_s)
            self.baselines[NUMPY] = self._done(NUMPY, records)
        finally:
            context.close()

    # -- Strata's page -----------------------------------------------------------------
    def _strata(self, page: StrataPage) -> list[dict]:
        local = [all_browser(self.model)] + ([all_browser(self.model, True)] if self.model.bundle else [])
        page.set_plan(local[0])  # asks for onnxruntime-web: the device's blocks get timed in both executors
        ort = page.wait_for_ort()
        self.log(f"onnxruntime-web in Strata's worker: {'ready' if ort.get('ready') else ort}")
        for p in local:
            self.local[plan_key(p)] = self._fixed(page, p)
        self.overhead = self._overhead(page)
        state = page.call("explain")
        self.device_ms = [ms or 0.0 for ms in state["device_ms"]]
        return [self._cell(page, link) for link in self.config.links]

    def _overhead(self, page: StrataPage) -> dict:
        """Strata's own cost per request: its answer with every block on the device (one
        onnxruntime-web graph) against the same graph called bare in the same worker, on
        the same inputs, the two interleaved, gap_s apart. Medians of page_ms, in ms."""
        page.set_plan(all_browser(self.model))
        self._wait_for_route(page)
        try:
            page.bare(0)
        except Error as exc:  # the route is not one joined graph from block 0: nothing to compare
            self.log(f"Strata's own cost per request not measured: {exc}")
            return {"error": str(exc)}
        strata, bare = [page.classify(0)["page_ms"]], [page.bare(0)["page_ms"]]
        for i in range(1, self.config.overhead.count(strata[0] + bare[0])):
            time.sleep(self.config.gap_s)
            strata.append(page.classify(i % self.samples)["page_ms"])
            time.sleep(self.config.gap_s)
            bare.append(page.bare(i % self.samples)["page_ms"])
        result = {"strata_ms": statistics.median(strata), "bare_ms": statistics.median(bare), "n": len(strata)}
        result["overhead_ms"] = result["strata_ms"] - result["bare_ms"]
        self.log(f"Strata's own cost per request: {result['overhead_ms']:.2f} ms ({result['strata_ms']:.2f} ms "
                 f"against {result['bare_ms']:.2f} ms bare, n={result['n']})")
        return result

    def _cell(self, page: StrataPage, link: str) -> dict:
        self._set_link(link)
        switched = time.monotonic()
        n = self.model.blocks
        fixed = dict(self.local)
        strategies = {}
        named = {EDGE: plan(0, n), CLOUD: plan(0, 0)}
        for name, p in named.items():
            if name in self.config.strategies:
                fixed[plan_key(p)] = strategies[name] = self._fixed(page, p, link)
        if NEUROSURGEON in self.config.strategies:
            if self.neurosurgeon is None:  # chosen once, on the first link (4g in the full grid)
                cuts = [plan(a, n) for a in range(n)] + [all_browser(self.model)]
                self._search(page, cuts, fixed, link, within=cuts)
                best = min((p for p in cuts if plan_key(p) in fixed), key=lambda p: fixed[plan_key(p)]["median_ms"])
                self.neurosurgeon = {"plan": best, "chosen_on": link}
            p = self.neurosurgeon["plan"]
            if plan_key(p) not in fixed:
                fixed[plan_key(p)] = self._fixed(page, p, link)
            strategies[NEUROSURGEON] = {**fixed[plan_key(p)], "plan": p}
        if self.config.search:
            self._search(page, candidates(self.model), fixed, link)
        if ADAPTIVE in self.config.strategies:
            strategies[ADAPTIVE] = self._adaptive(page, link, switched)
            used = next(iter(strategies[ADAPTIVE]["plans"]))  # the plan it used most
            p = next(r["plan"] for r in strategies[ADAPTIVE]["records"] if plan_key(r["plan"]) == used)
            if used not in fixed:
                fixed[used] = self._fixed(page, p, link)
        strategies.update(self.baselines)
        if ORACLE in self.config.strategies:
            key = min(fixed, key=lambda k: fixed[k]["median_ms"])
            strategies[ORACLE] = {**fixed[key], "plan": key}
        return {"link": link, "strategies": {name: _public(s) for name, s in strategies.items()},
                "fixed": {k: _public(s) for k, s in fixed.items()}}

    def _search(self, page: StrataPage, plans: list[dict], fixed: dict, link: str,
                within: list[dict] | None = None) -> None:
        """Measure the plans not measured yet whose lower bound could still beat the best
        measured plan (of `within`, if given)."""
        pool = None if within is None else {plan_key(p) for p in within}
        for p in sorted(plans, key=lambda p: floor_ms(self.model, p, link, self.device_ms)):
            key = plan_key(p)
            best = min((s["median_ms"] for k, s in fixed.items() if pool is None or k in pool), default=float("inf"))
            if key not in fixed and floor_ms(self.model, p, link, self.device_ms) < best:
                fixed[key] = self._fixed(page, p, link)

    def _fixed(self, page: StrataPage, p: dict, link: str = "any link") -> dict:
        page.set_plan(p)
        self._wait_for_route(page)
        page.classify(0)  # a first request may fetch and check block files: not what is measured
        records = run(lambda i: from_strata(page.classify(i)), self.config.fixed, self.samples, self.config.gap_s)
        return self._done(f"{plan_key(p)} ({link})", records)

    def _adaptive(self, page: StrataPage, link: str, switched: float) -> dict:
        page.set_plan(None)
        time.sleep(max(1.0, self.config.settle_s - (time.monotonic() - switched)))
        self._wait_for_route(page)
        records = run(lambda i: from_strata(page.classify(i)), self.config.adaptive, self.samples, self.config.gap_s)
        summary = self._done(f"adaptive ({link})", records)
        summary["records"] = records
        return summary

    def _wait_for_route(self, page: StrataPage) -> None:
        if not page.wait_for_route():
            self.log(f"the plan's joined graph is still not ready: measuring with one call per block "
                     f"({page.call('explain').get('join_errors')})")

    def _done(self, label: str, records: list[dict]) -> dict:
        summary = summarize(records)
        self.log(f"{label}: median {summary['median_ms']:.1f} ms, p95 {summary['p95_ms']:.1f} ms, "
                 f"agreement {summary['agreement']:.2f}, n={summary['n']}"
                 + (f", plans {summary['plans']}" if len(summary["plans"]) > 1 or label.startswith("adaptive") else ""))
        return summary

    def _set_link(self, link: str) -> None:
        httpx.put(f"{self.control}/profile/{link}").raise_for_status()


def _public(summary: dict) -> dict:
    """A summary without its raw records."""
    return {k: v for k, v in summary.items() if k != "records"}
