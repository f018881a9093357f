"""Context-aware pruning in real Chromium: each variant fixed, against the adaptive choice.

Set-up as `strata bench adaptive` (the cloud behind an `edge-cloud` emulator, the edge,
an emulator between the browser and the edge), with the browser held to a mid-range
phone's speed (bench/throttle.py, DEVICE_RATE): on a fast desktop CPU the whole model
runs in a few ms and no budget worth setting needs pruning.

0. Warm-up: each variant runs on the device once, so its blocks are fetched and timed
   (onnxruntime-web included) before anything is measured; each cell also drops its
   first WARM_UP answers, which time the blocks of a newly chosen plan.
1. The budget: on 3g, the 95th-percentile latency of the unpruned model and of the most
   pruned variant, each with the planner choosing its cuts for latency; the budget is
   their geometric mean, so the unpruned model misses it (unless --budget-ms is given).
2. For each link profile, under the "accuracy within the budget" goal: each variant
   alone (the planner still chooses the cuts), and Strata adaptive, which chooses the
   variant and the cuts together. Per cell: median and p95 latency, the share of
   requests within the budget, accuracy, and the device energy the planner predicts.
3. The edge's throughput at 64 clients offloading after conv1, unpruned against the
   variant adaptive used most on 3g.

Accuracy is reported twice: on the requests sent (shipped test images, noisy), and as
the test-set accuracy (10,000 images, from each variant's manifest) of the variant each
request used, averaged over the requests: the figure the ≤ 1.5-point target is about.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright
from strata.plan import Plan

from bench.load import conv1_outputs, run_load
from bench.throttle import slowed
from edge_server.config import Settings
from testing.chromium import launch
from testing.servers import edge_process, emulated_tiers

PROFILES = ("wifi", "4g", "3g")
DEVICE_RATE = 4  # a mid-range phone, as Lighthouse and DevTools emulate one
SETTLE_S = 5.0  # after a goal or profile change: probes and the planner catch up
WARM_UP = 4  # requests per cell not counted: the plan's first answers time its blocks
LOAD_CLIENTS = 64


def _variants(models: Path) -> tuple[list[str], dict[str, float]]:
    """Variant names ("" unpruned first) and each one's test-set system accuracy."""
    manifest = json.loads((models / "manifest.json").read_text())
    accuracy = {"": manifest["test"]["system_accuracy"]}
    for entry in manifest.get("variants", []):
        variant = json.loads((models / entry["dir"] / "manifest.json").read_text())
        accuracy[entry["name"]] = variant["test"]["system_accuracy"]
    return list(accuracy), accuracy


def _cell(page: Page, control: str, profile: str, budget: float | None, offered: list[str] | None,
          requests: int) -> list[dict]:
    httpx.put(f"{control}/profile/{profile}").raise_for_status()
    goal = ("accuracy", budget) if budget else ("latency", None)
    page.evaluate("([kind, budget, offered]) => window.strata.callWorker('set_goal', kind, budget, false, offered)",
                  [*goal, offered])
    page.wait_for_timeout(SETTLE_S * 1000)
    answers = [page.evaluate("i => window.strata.callWorker('classify_sample', i)", i)
               for i in range(requests + WARM_UP)]
    return answers[WARM_UP:]


def _summary(answers: list[dict], budget: float | None, accuracy: dict[str, float]) -> dict:
    times = sorted(a["timing"]["total_ms"] for a in answers)
    used = Counter(a["plan"]["variant"] for a in answers)
    energy = [a["predicted_mj"] for a in answers if a.get("predicted_mj") is not None]
    errors = [abs(a["predicted_ms"] - a["timing"]["total_ms"]) / a["timing"]["total_ms"]
              for a in answers if a.get("predicted_ms")]
    return {
        "median_ms": statistics.median(times), "p95_ms": times[int(0.95 * (len(times) - 1))],
        "within_budget": None if budget is None else sum(t <= budget for t in times) / len(times),
        "sample_accuracy": sum(a["label"] == a["truth"] for a in answers) / len(answers),
        "test_accuracy": sum(accuracy[v] * n for v, n in used.items()) / len(answers),
        "energy_mj": statistics.mean(energy) if energy else None,
        "prediction_error": statistics.median(errors) if errors else None,
        "variants_used": dict(used), "fallbacks": sum(bool(a["fallback"]) for a in answers),
    }


def _edge_throughput(variant: str, models: Path) -> float:
    """Requests/s of the edge alone (no cloud) at LOAD_CLIENTS clients, offloading after conv1."""
    blocks = len(json.loads((models / "manifest.json").read_text())["blocks"])
    features = conv1_outputs(models, 256)
    with edge_process("--no-cloud") as (edge, _):
        result = asyncio.run(run_load(edge.replace("http", "ws") + "/ws", features,
                                      Plan(1, blocks, "f16", False, variant), LOAD_CLIENTS, 10, True))
    return result.requests / result.seconds if not result.errors else float("nan")


def measure(requests: int, budget: float | None) -> dict:
    models = Settings().models_dir
    names, accuracy = _variants(models)
    if len(names) < 2:
        raise SystemExit("models/manifest.json lists no pruned variants: run `strata prune` first")
    cells: dict[str, dict] = {}
    with ExitStack() as stack:
        url, control, _ = stack.enter_context(emulated_tiers())
        playwright = stack.enter_context(sync_playwright())
        stack.enter_context(slowed(DEVICE_RATE))
        page = launch(playwright).new_page()
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready=true]", timeout=180_000)
        page.wait_for_selector("#edge-state[data-state=connected]", timeout=30_000)
        for name in names:  # every variant's blocks fetched and timed on the device once
            _cell(page, control, "3g", None, [name], 2 * WARM_UP)
        if budget is None:
            p95 = {}
            for name in ("", names[-1]):
                p95[name] = _summary(_cell(page, control, "3g", None, [name], requests), None, accuracy)["p95_ms"]
                print(f"  calibration on 3g, {name or 'unpruned'}: p95 {p95[name]:.1f} ms", flush=True)
            budget = math.sqrt(p95[""] * p95[names[-1]])
        print(f"  budget {budget:.1f} ms", flush=True)
        for profile in PROFILES:
            for offered in [*([name] for name in names), None]:
                key = f"{profile}/{'adaptive' if offered is None else offered[0] or 'unpruned'}"
                cells[key] = _summary(_cell(page, control, profile, budget, offered, requests), budget, accuracy)
                cell = cells[key]
                print(f"  {key:16s} median {cell['median_ms']:6.1f} ms, p95 {cell['p95_ms']:6.1f} ms, "
                      f"within budget {cell['within_budget']:.0%}, test accuracy {cell['test_accuracy']:.2%}, "
                      f"variants {cell['variants_used']}", flush=True)
    favourite = max(cells["3g/adaptive"]["variants_used"], key=cells["3g/adaptive"]["variants_used"].get)
    throughput = {name: _edge_throughput(name, models) for name in dict.fromkeys(["", favourite])}
    return {"budget_ms": budget, "device_rate": DEVICE_RATE, "requests": requests, "cells": cells,
            "variants": names, "edge_throughput_rps": throughput}


def _best_fixed(result: dict) -> str:
    """The single variant that, fixed for every profile, keeps most requests within the
    budget on average (ties: the more accurate)."""
    def score(name: str) -> tuple:
        label = name or "unpruned"
        cells = [result["cells"][f"{p}/{label}"] for p in PROFILES]
        return (statistics.mean(c["within_budget"] for c in cells), statistics.mean(c["test_accuracy"] for c in cells))
    return max(result["variants"], key=score) or "unpruned"


def _used(cell: dict) -> str:
    return ", ".join(f"{name or 'unpruned'}: {count}" for name, count in cell["variants_used"].items())


def _report(result: dict, seconds: float) -> str:
    cells, budget = result["cells"], result["budget_ms"]
    columns = [name or "unpruned" for name in result["variants"]] + ["adaptive"]
    lines = [f"Budget {budget:.1f} ms; device {result['device_rate']}x slower than this CPU; "
             f"{result['requests']} requests per cell; {seconds:.0f} s in all.", "",
             "| link | strategy | median (ms) | p95 (ms) | within budget | test accuracy | accuracy on the requests "
             "| energy (mJ, model) | variants used |", "|---|---|---|---|---|---|---|---|---|"]
    for profile in PROFILES:
        for column in columns:
            c = cells[f"{profile}/{column}"]
            lines.append(f"| {profile} | {column} | {c['median_ms']:.1f} | {c['p95_ms']:.1f} | {c['within_budget']:.0%} | "
                         f"{c['test_accuracy']:.2%} | {c['sample_accuracy']:.1%} | {c['energy_mj']:.2f} | "
                         f"{_used(c)} |")
    best = _best_fixed(result)
    unpruned, adaptive, fixed = (cells[f"3g/{k}"] for k in ("unpruned", "adaptive", best))
    throughput = result["edge_throughput_rps"]
    favourite = max(throughput, key=throughput.get)
    lines += ["", f"On 3g: adaptive keeps {adaptive['within_budget']:.0%} of requests within the budget (unpruned "
              f"{unpruned['within_budget']:.0%}, best single variant fixed everywhere, {best}: "
              f"{fixed['within_budget']:.0%}), losing {100 * (unpruned['test_accuracy'] - adaptive['test_accuracy']):.2f} "
              f"points of test accuracy against the unpruned model.",
              f"Gains over the unpruned model on 3g: median latency {unpruned['median_ms'] / adaptive['median_ms']:.2f}x, "
              f"p95 {unpruned['p95_ms'] / adaptive['p95_ms']:.2f}x, device energy (model) "
              f"{unpruned['energy_mj'] / adaptive['energy_mj']:.2f}x; edge throughput at {LOAD_CLIENTS} clients "
              f"{throughput[favourite] / throughput['']:.2f}x ({throughput['']:.0f} -> "
              f"{throughput[favourite]:.0f} req/s with {favourite or 'unpruned'})."]
    return "\n".join(lines) + "\n"


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(1, len(PROFILES), figsize=(4 * len(PROFILES), 3.6), sharey=True)
    columns = [name or "unpruned" for name in result["variants"]] + ["adaptive"]
    for axis, profile in zip(axes, PROFILES):
        for column in columns:
            c = result["cells"][f"{profile}/{column}"]
            axis.scatter(c["p95_ms"], 100 * c["test_accuracy"], marker="*" if column == "adaptive" else "o",
                         s=120 if column == "adaptive" else 50, label=column)
        axis.axvline(result["budget_ms"], color="grey", linestyle="--", linewidth=1)
        axis.set_title(profile)
        axis.set_xlabel("p95 latency (ms)")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[-1].legend(fontsize=8)
    figure.suptitle(f"Accuracy against latency per link (dashed: the {result['budget_ms']:.0f} ms budget)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(requests: int, budget: float | None, out: Path) -> int:
    started = time.perf_counter()
    print(f"Pruning benchmark: {requests} requests per cell, device {DEVICE_RATE}x slower", flush=True)
    result = measure(requests, budget)
    table = _report(result, time.perf_counter() - started)
    print("\n" + table)
    (out / "pruning.json").write_text(json.dumps(result, indent=1))
    (out / "pruning.md").write_text(table)
    _plot(result, out / "pruning.png")
    print(f"wrote {out / 'pruning.json'}, pruning.md and pruning.png")
    return 0
