"""The planner against fixed plans, in real headless Chromium behind the link emulator.

Set-up: the cloud, a link emulator in `edge-cloud` profile in front of it, the edge
forwarding through that, and a second emulator between the browser and the edge, whose
profile each run sets. The page is loaded over `wifi` (it is 9 MB), then the profile is
switched. For each profile (and a run that switches from wifi to 3g half-way), every
candidate fixed plan answers the same test images, and so does the adaptive planner.

Reported per profile: median latency of each plan; the oracle (the best fixed plan
measured); adaptive / oracle; the three single-tier strategies (all in the browser,
all at the edge, all in the cloud, raw input uploaded); and the median prediction
error of the planner's latency model (predicted against measured, per request).
"""

from __future__ import annotations

import json
import statistics
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright
from strata.plan import Plan

from edge_server.config import Settings
from testing.chromium import launch
from testing.servers import emulated_tiers

PROFILES = ("wifi", "4g", "3g", "wifi>3g")
SETTLE_S = 6.0  # after a profile change: the probes need a few rounds to see it


def single_tier(blocks: int) -> dict[str, Plan]:
    return {"all in the browser": Plan(blocks, blocks, "f32", branch=False),
            "all at the edge": Plan(0, blocks, "f16", branch=False),
            "all in the cloud": Plan(0, 0, "f16", branch=False)}


def candidates(blocks: int) -> list[Plan]:
    """Fixed plans to measure: the single-tier ones, and cuts after conv1 with the branch
    on and off, with a light and a compact codec, edge/cloud splits at a few points."""
    plans = list(single_tier(blocks).values())
    splits = sorted({1, blocks // 2, blocks - 1, blocks})
    for branch in (True, False):
        for b in splits:
            for codec in ("f16", "i8c+z"):
                plans.append(Plan(1, b, codec, branch))
    plans.append(Plan(blocks, blocks, "f32", branch=True))
    return list(dict.fromkeys(plans))


def _set_profile(control: str, name: str) -> None:
    response = httpx.put(f"{control}/profile/{name}")
    response.raise_for_status()


def _run(page: Page, plan: Plan | None, control: str, profile: str, requests: int) -> list[dict]:
    """`requests` gallery images through the page under one plan (None: the planner)."""
    first, _, second = profile.partition(">")
    _set_profile(control, first)
    page.evaluate("plan => window.strata.callWorker('set_plan', plan)", None if plan is None else plan.to_header())
    if plan is None:
        page.wait_for_timeout(SETTLE_S * 1000)
    answers = []
    for i in range(requests):
        if second and i == requests // 2:
            _set_profile(control, second)
        answers.append(page.evaluate("i => window.strata.classify(i)", i))
    return answers


def _summary(answers: list[dict]) -> dict:
    times = [a["timing"]["total_ms"] for a in answers]
    errors = [abs(a["predicted_ms"] - t) / t for a, t in zip(answers, times) if a.get("predicted_ms")]
    return {"median_ms": statistics.median(times), "mean_ms": statistics.mean(times),
            "p95_ms": sorted(times)[int(0.95 * (len(times) - 1))],
            "prediction_error": statistics.median(errors) if errors else None,
            "fallbacks": sum(bool(a["fallback"]) for a in answers)}


def measure(requests: int) -> dict:
    models = Settings().models_dir
    blocks = len(json.loads((models / "manifest.json").read_text())["blocks"])
    results = {}
    with ExitStack() as stack:
        url, control, _ = stack.enter_context(emulated_tiers())
        playwright = stack.enter_context(sync_playwright())
        browser = launch(playwright)
        page = browser.new_page()
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready=true]", timeout=120_000)
        page.wait_for_selector("#edge-state[data-state=connected]", timeout=30_000)
        for profile in PROFILES:
            rows = {}
            for plan in candidates(blocks):
                rows[json.dumps(plan.to_header())] = _summary(_run(page, plan, control, profile, requests))
            adaptive_answers = _run(page, None, control, profile, requests)
            adaptive = _summary(adaptive_answers)
            adaptive["plans"] = sorted({json.dumps(a["plan"]) for a in adaptive_answers})
            oracle_key = min(rows, key=lambda k: rows[k]["median_ms"])
            singles = {name: rows[json.dumps(p.to_header())]["median_ms"] for name, p in single_tier(blocks).items()}
            results[profile] = {"fixed": rows, "adaptive": adaptive, "oracle": json.loads(oracle_key),
                                "oracle_ms": rows[oracle_key]["median_ms"],
                                "ratio": adaptive["median_ms"] / rows[oracle_key]["median_ms"],
                                "single_tier_ms": singles}
            print(f"  {profile:8s} adaptive {adaptive['median_ms']:7.1f} ms, oracle {rows[oracle_key]['median_ms']:7.1f} ms "
                  f"({results[profile]['ratio']:.2f}x), prediction error {adaptive['prediction_error']}", flush=True)
        browser.close()
    return results


def main(runs: int, requests: int, out: Path) -> int:
    started = time.perf_counter()
    trials = []
    for run in range(runs):
        print(f"run {run + 1}/{runs}", flush=True)
        trials.append(measure(requests))
    rows = []
    for profile in PROFILES:
        ratio = statistics.median(t[profile]["ratio"] for t in trials)
        adaptive = statistics.median(t[profile]["adaptive"]["median_ms"] for t in trials)
        oracle = statistics.median(t[profile]["oracle_ms"] for t in trials)
        errors = [t[profile]["adaptive"]["prediction_error"] for t in trials if t[profile]["adaptive"]["prediction_error"]]
        singles = {name: statistics.median(t[profile]["single_tier_ms"][name] for t in trials)
                   for name in trials[0][profile]["single_tier_ms"]}
        rows.append({"profile": profile, "adaptive_ms": adaptive, "oracle_ms": oracle, "ratio": ratio,
                     "prediction_error": statistics.median(errors) if errors else None, **singles})
    lines = ["| link | adaptive (ms) | oracle (ms) | adaptive / oracle | all in the browser | all at the edge | "
             "all in the cloud | prediction error |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['profile']} | {r['adaptive_ms']:.1f} | {r['oracle_ms']:.1f} | {r['ratio']:.2f}x | "
                     f"{r['all in the browser']:.1f} | {r['all at the edge']:.1f} | {r['all in the cloud']:.1f} | "
                     f"{100 * r['prediction_error']:.0f} % |" if r["prediction_error"] is not None else "")
    averages = {name: statistics.mean(r[name] for r in rows)
                for name in ("adaptive_ms", "all in the browser", "all at the edge", "all in the cloud")}
    table = "\n".join(lines) + "\n\nAverage over the links: " + ", ".join(
        f"{name} {ms:.1f} ms" for name, ms in averages.items()) + f". {runs} runs of {requests} images, medians; " \
        f"{time.perf_counter() - started:.0f} s in all.\n"
    print("\n" + table)
    (out / "adaptive.json").write_text(json.dumps({"runs": runs, "requests": requests, "rows": rows,
                                                   "trials": trials}, indent=1))
    (out / "adaptive.md").write_text(table)
    return 0
