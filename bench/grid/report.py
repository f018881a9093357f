"""The grid's results against the targets: JSON, a markdown report and PNG plots.

Targets (issues 7 and 16), each computed here from the measured medians:

- Strata adaptive within 1.1x of the fastest strategy measured in a cell, in at least 24
  of the 27 cells;
- open-nsfw on the 4x device over wifi and 4g: adaptive >= 2x faster than onnxruntime-web;
- the best single fixed strategy (the one, among those measured in every cell, whose
  mean over the cells of its median / adaptive's median is lowest): that mean >= 1.33;
- Strata's own cost per request with every block on the device, over the same
  onnxruntime-web graph called bare in the same page: <= 0.3 ms at 1x;
- our model: >= 16x fewer model bytes before the first answer than onnxruntime-web;
- time to the first answer: <= 3 s cold, <= 1.5 s warm.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from bench.grid.cells import ADAPTIVE, NEUROSURGEON, ORACLE, ORT_WEB, STRATEGIES

CELL_RATIO = 1.1
CELLS_OK = 24  # of the full grid's 27
OFFLOAD_GAIN = 2.0
OVERHEAD_MS = 0.3
SINGLE_GAIN = 1.33
MODEL_BYTES_GAIN = 16.0
COLD_MS, WARM_MS = 3000.0, 1500.0


def cells(results: dict) -> list[dict]:
    """Every (model, device, link) cell with its strategies, flattened."""
    return [{"model": name, "device": device["rate"], **cell}
            for name, model in results["models"].items() for device in model["devices"] for cell in device["cells"]]


def _fastest(cell: dict) -> tuple[str, float]:
    others = {k: s["median_ms"] for k, s in cell["strategies"].items() if k != ADAPTIVE}
    name = min(others, key=others.get)
    return name, others[name]


def _plan_name(plan: str | dict | None) -> str:
    if isinstance(plan, dict):
        return f"{plan['a']}/{plan['b']}/{plan['codec']}" + ("/branch" if plan.get("branch") else "")
    return plan or "-"


def _why(blocks: int, row: dict) -> str:
    """One sentence on why adaptive lost a cell, from what it ran and what won."""
    used = next(iter(row["adaptive_plans"]), "")
    a = int(used.split("/")[0]) if used else 0
    winner = _plan_name(row["fastest_plan"] or row["fastest"])
    winner_a = int(winner.split("/")[0]) if winner[:1].isdigit() else blocks  # a named local strategy
    error = row["prediction_error"]
    if used == winner:
        others = [plan for plan in row["adaptive_plans"] if plan != used]
        return ("it ran the winning plan for most requests" + (f", and {', '.join(others)} for the others" if others
                else "") + "; the rest is run-to-run noise (each plan is measured at another moment)")
    if winner.endswith("/branch") and not used.endswith("/branch"):
        return (f"{winner} runs the binary branch first and its exits set its median; the planner weighs the "
                "mean latency, which the images that do not exit make higher")
    if a == blocks and winner_a == blocks:
        if used.endswith("/branch"):
            return ("it ran everything on the device with the binary branch: the numpy conv1 and branch of the "
                    "exit path cost more than onnxruntime-web's whole model here")
        return ("it ran the same graph in onnxruntime-web as the winner, in one call; the difference is "
                "Strata's own per-request cost (Pyodide's call bridge, the worker's Python, its probes)"
                + (", which the throttled device inflates beyond its slowdown" if row["device"] > 1 else ""))
    if a < blocks and winner_a == blocks:
        return (f"it offloaded ({used}), which the planner predicted faster than the device (off by "
                f"{100 * (error or 0):.0f} % at the median); the device was faster")
    if a == blocks:
        return f"it kept the work on the device; offloading ({winner}) was faster on this link"
    return f"it cut at {used}, and {winner} was faster: the two were within the planner's error"


def targets(results: dict) -> dict:
    grid = cells(results)
    per_cell = []
    for cell in grid:
        if ADAPTIVE not in cell["strategies"]:
            continue
        adaptive = cell["strategies"][ADAPTIVE]
        name, best = _fastest(cell)
        per_cell.append({"model": cell["model"], "device": cell["device"], "link": cell["link"],
                         "adaptive_ms": adaptive["median_ms"], "fastest": name, "fastest_ms": best,
                         "fastest_plan": cell["strategies"][name].get("plan"),
                         "ratio": adaptive["median_ms"] / best, "ok": adaptive["median_ms"] <= CELL_RATIO * best,
                         "adaptive_plans": adaptive["plans"], "prediction_error": adaptive["prediction_error"]})
        if not per_cell[-1]["ok"]:
            per_cell[-1]["why"] = _why(results["models"][cell["model"]]["blocks"], per_cell[-1])
    offload = [{"link": c["link"], "ort_web_ms": c["strategies"][ORT_WEB]["median_ms"],
                "adaptive_ms": c["strategies"][ADAPTIVE]["median_ms"],
                "gain": c["strategies"][ORT_WEB]["median_ms"] / c["strategies"][ADAPTIVE]["median_ms"]}
               for c in grid if c["model"] == "open-nsfw" and c["device"] == 4.0 and c["link"] in ("wifi", "4g")
               and {ORT_WEB, ADAPTIVE} <= c["strategies"].keys()]
    for row in offload:
        row["ok"] = row["gain"] >= OFFLOAD_GAIN
    fixed = [s for s in STRATEGIES if s not in (ORACLE, ADAPTIVE)
             and grid and all(s in c["strategies"] for c in grid)]
    ratios = {s: statistics.mean(c["strategies"][s]["median_ms"] / c["strategies"][ADAPTIVE]["median_ms"]
                                 for c in grid) for s in fixed} if per_cell else {}
    best = min(ratios, key=ratios.get) if ratios else None
    startup = {name: _startup(model) for name, model in results["models"].items() if "startup" in model}
    overhead = [{"model": name, "device": device["rate"], **device["overhead"],
                 "ok": device["rate"] != 1.0 or device["overhead"]["overhead_ms"] <= OVERHEAD_MS}
                for name, model in results["models"].items() for device in model["devices"]
                if "overhead_ms" in device.get("overhead", {})]
    return {"per_cell": per_cell, "cells_ok": sum(c["ok"] for c in per_cell), "cells": len(per_cell),
            "overhead": overhead,
            "offload_pays": offload,
            "single_strategy": {"mean_ratio_by_strategy": ratios, "best": best,
                                "gain": ratios.get(best), "ok": best is not None and ratios[best] >= SINGLE_GAIN},
            "startup": startup}


def _startup(model: dict) -> dict:
    strata, ort = model["startup"]["strata"], model["startup"]["onnxruntime-web"]
    strata_model = strata["cold"]["bytes"]["model"]["wire"]
    ort_model = ort["cold"]["bytes"]["model"]["wire"]
    return {"strata_cold_ms": strata["cold"]["first_answer_ms"], "strata_warm_ms": strata["warm"]["first_answer_ms"],
            "ort_cold_ms": ort["cold"]["first_answer_ms"], "ort_warm_ms": ort["warm"]["first_answer_ms"],
            "strata_model_bytes": strata_model, "ort_model_bytes": ort_model,
            "model_bytes_gain": ort_model / strata_model if strata_model else None,
            "strata_runtime_bytes": strata["cold"]["bytes"]["runtime"]["wire"],
            "ort_runtime_bytes": ort["cold"]["bytes"]["runtime"]["wire"],
            "cold_ok": strata["cold"]["first_answer_ms"] <= COLD_MS,
            "warm_ok": strata["warm"]["first_answer_ms"] <= WARM_MS}


# -- markdown ------------------------------------------------------------------------------
def _ms(summary: dict | None) -> str:
    return "n/a" if summary is None else f"{summary['median_ms']:.0f} ({summary['p95_ms']:.0f})"


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def markdown(results: dict, goals: dict) -> str:
    names = results["strategies"]
    runs = results.get("run_count", 1)
    title = (f"{results['mode']} run, {results['wall_s'] / 60:.1f} min" if runs == 1 else
             f"median of {runs} {results['mode']} runs, {results['wall_s'] / 60:.1f} min in all")
    lines = [f"# The grid ({title})", "",
             ("Median (p95) end-to-end latency in ms per strategy, timed in the page from the call to the "
             "answer (the worker's bridge included, for every strategy alike), requests 30 ms apart; "
             "ratio = Strata adaptive / the fastest other strategy in the cell (target <= 1.1). Devices: this machine's CPU (1x) and 4x / 6x "
             "slower (bench/throttle.py). n/a: the strategy cannot run that model (numpy needs our "
             "model's op list)."), ""]
    by_cell = {(c["model"], c["device"], c["link"]): c for c in goals["per_cell"]}
    for model in results["models"]:
        lines += [f"## {model}", "", "| device | link | " + " | ".join(names) + " | ratio | fastest |",
                  "|---|---|" + "---|" * (len(names) + 2)]
        for cell in (c for c in cells(results) if c["model"] == model):
            row = by_cell.get((model, cell["device"], cell["link"]))
            ratio = f"{row['ratio']:.2f}" + ("" if row["ok"] else " ✗") if row else "-"
            lines.append(f"| {cell['device']:g}x | {cell['link']} | "
                         + " | ".join(_ms(cell["strategies"].get(n)) for n in names)
                         + f" | {ratio} | {row['fastest'] if row else '-'} |")
        lines.append("")
    lines += _targets_md(goals) + _details_md(results) + _startup_md(results, goals) + METHOD.splitlines()
    return "\n".join(lines) + "\n"


METHOD = """## How this was measured

- `strata bench grid` (bench/grid.py); each strategy's code is named in bench/grid/cells.py.
- Devices: CDP's `Emulation.setCPUThrottlingRate` does not reach a Web Worker in this Chromium (checked
  above), so bench/throttle.py stops the renderer processes (SIGSTOP/SIGCONT) long enough that each ms of
  CPU their worker threads use takes 4 or 6 ms of wall time; waiting on the network is not slowed.
- Links: the link emulator between browser and edge (wifi, 4g, 3g), and one in `edge-cloud` profile
  between edge and cloud. All servers and the browser share this 2-core machine.
- Each fixed plan gets as many requests as fit in 1.5 s at its first request's speed (3 to 12), Strata
  adaptive 4 s (6 to 20), on the same samples in the same order, 30 ms apart. The planner's goal is latency.
- Latency is timed in the page, from the call into the worker to the answer, for every strategy: Strata's
  Pyodide call bridge counts, as onnxruntime-web's message round trip does. (Timed inside the worker
  instead, the throttler would charge the bridge's CPU to the next request's timed part.) The planner's
  prediction error is against the worker's own time, which is what it predicts.
- A fixed plan is measured after one unmeasured request, once its onnxruntime-web stretch runs as one
  joined graph (the worker fetches it in the background); adaptive likewise, after the probes settled.
- onnxruntime-web and numpy-only do not use the network: measured once per device, shown for every link.
- The oracle is the best of the fixed plans measured in the cell: the named ones, browser|edge cuts with
  f16 and i8c+z, all in the cloud, the branch variants for our model, and the plan adaptive used most;
  candidates whose lower bound (network floor of the profile plus 0.8 x the worker's own block times)
  already exceeds the best median are skipped.
- Split models have no labels: their accuracy is agreement with full.onnx's argmax on the same tensors.
"""


def _targets_md(goals: dict) -> list[str]:
    single = goals["single_strategy"]
    lines = ["## Targets", "",
             f"- Adaptive within {CELL_RATIO}x of the fastest strategy: {goals['cells_ok']} of {goals['cells']} cells"
             + (f" (target >= {CELLS_OK} of 27) {'✓' if goals['cells_ok'] >= CELLS_OK else '✗'}."
                if goals["cells"] == 27 else ".")]
    for row in goals["overhead"]:
        lines.append(f"- {row['model']}, {row['device']:g}x device: Strata's own cost per request with every block "
                     f"on the device {row['overhead_ms']:.2f} ms ({row['strata_ms']:.2f} ms in Strata's page against "
                     f"{row['bare_ms']:.2f} ms for the same onnxruntime-web graph called bare there)"
                     + (f" (target <= {OVERHEAD_MS} ms) {'✓' if row['ok'] else '✗'}" if row["device"] == 1.0 else ""))
    for row in goals["offload_pays"]:
        lines.append(f"- open-nsfw, 4x device, {row['link']}: onnxruntime-web {row['ort_web_ms']:.0f} ms / adaptive "
                     f"{row['adaptive_ms']:.0f} ms = {row['gain']:.2f}x (target >= {OFFLOAD_GAIN}x) "
                     + ("✓" if row["ok"] else "✗"))
    if single["best"]:
        others = ", ".join(f"{k} {v:.2f}x" for k, v in single["mean_ratio_by_strategy"].items())
        lines.append(f"- Best single fixed strategy: {single['best']}, mean of its median / adaptive's over the "
                     f"cells {single['gain']:.2f}x (target >= {SINGLE_GAIN}x) {'✓' if single['ok'] else '✗'} "
                     f"(all: {others}).")
    for name, s in goals["startup"].items():
        gain = f"{s['model_bytes_gain']:.1f}x" if s["model_bytes_gain"] else "n/a"
        lines.append(f"- {name}: model bytes before the first answer {s['strata_model_bytes']:,} (Strata) vs "
                     f"{s['ort_model_bytes']:,} (onnxruntime-web): {gain}"
                     + (f" (target >= {MODEL_BYTES_GAIN:g}x)" if name == "ours" else "")
                     + f"; first answer cold {s['strata_cold_ms'] / 1000:.2f} s "
                     f"{'✓' if s['cold_ok'] else '✗'}, warm {s['strata_warm_ms'] / 1000:.2f} s "
                     f"{'✓' if s['warm_ok'] else '✗'} (targets <= {COLD_MS / 1000:g} s / <= {WARM_MS / 1000:g} s).")
    misses = [c for c in goals["per_cell"] if not c["ok"]]
    if misses:
        lines += ["", "Cells where adaptive is more than 1.1x the fastest: what it ran, what won, and why.", "",
                  ("| model | device | link | adaptive ms | its plans (count) | prediction error | fastest | ms "
                  "| plan | why |"),
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for c in misses:
            error = f"{100 * c['prediction_error']:.0f} %" if c["prediction_error"] is not None else "-"
            lines.append(f"| {c['model']} | {c['device']:g}x | {c['link']} | {c['adaptive_ms']:.1f} | "
                         f"{', '.join(f'{k} ({v})' for k, v in c['adaptive_plans'].items())} | {error} | "
                         f"{c['fastest']} | {c['fastest_ms']:.1f} | {_plan_name(c['fastest_plan'])} | {c['why']} |")
    return lines + [""]


def _details_md(results: dict) -> list[str]:
    lines = ["## Every strategy in every cell", "",
             ("Accuracy for our model (against the test labels); for the split models, agreement with the "
             "full model's answer. Bytes: median per request over the device's link. Energy: the planner's "
             "power model on the measured times (bench/grid/stats.py)."), "",
             "<details><summary>the table</summary>", "",
             ("| model | device | link | strategy | median ms | p95 ms | accuracy / agreement | up KB | down KB | "
             "energy mJ | n | plan |"), "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for cell in cells(results):
        for name, s in cell["strategies"].items():
            plan = s.get("plan") or ", ".join(s.get("plans", {}))
            if isinstance(plan, dict):
                plan = f"{plan['a']}/{plan['b']}/{plan['codec']}"
            lines.append(f"| {cell['model']} | {cell['device']:g}x | {cell['link']} | {name} | {s['median_ms']:.1f} | "
                         f"{s['p95_ms']:.1f} | {s['agreement']:.2f} | {s['up_bytes'] / 1e3:.1f} | "
                         f"{s['down_bytes'] / 1e3:.1f} | {s['energy_mj']:.0f} | {s['n']} | {plan} |")
    neurosurgeon = [(name, d["rate"], d["neurosurgeon"]) for name, m in results["models"].items()
                    for d in m["devices"] if d.get("neurosurgeon")]
    if neurosurgeon:
        lines += ["", f"{NEUROSURGEON}: the browser|edge cut (a, b = N, f16) measured fastest on 4g, per model "
                  "and device: " + "; ".join(f"{n} {r:g}x a={ns['plan']['a']}" for n, r, ns in neurosurgeon) + "."]
    return lines + ["", "</details>", ""]


def _startup_md(results: dict, goals: dict) -> list[str]:
    lines = ["## Start-up: time to the first answer and bytes before it (this machine's CPU, loopback)", "",
             ("| model | runtime | first answer cold | warm | ready cold | runtime bytes | model bytes | inputs "
             "| page |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for name, model in results["models"].items():
        for runtime in ("strata", "onnxruntime-web"):
            s = model["startup"][runtime]
            b = s["cold"]["bytes"]
            lines.append(f"| {name} | {runtime} | {s['cold']['first_answer_ms'] / 1000:.2f} s | "
                         f"{s['warm']['first_answer_ms'] / 1000:.2f} s | {s['cold']['ready_ms'] / 1000:.2f} s | "
                         + " | ".join(_mb(b[k]["wire"]) for k in ("runtime", "model", "inputs", "page")) + " |")
    lines += ["", ("Bytes over the network (gzip where served so) before the first answer, cold. Strata's runtime is "
              "Pyodide, numpy and the strata wheel; onnxruntime-web's, its module and wasm.")]
    check = results.get("throttle_check")
    if check:
        plain, cdp = check["plain"], check["cdp_4x_on_page"]

        def under(runs: dict) -> str:
            return "; ".join(f"{r}x (parameter {ms['param']:.2f}): {ms['short_ms']:.1f} / {ms['baseline_ms']:.1f} / "
                             f"{ms['long_ms']:.1f} ms, {ms['slowdown_short']:.1f}x / {ms['slowdown_baseline']:.1f}x / "
                             f"{ms['slowdown_long']:.1f}x" for r, ms in runs.items())

        lines += ["", "## Does the slower device slow the worker, and both sides alike?", "",
                  (f"Three workloads, short / baseline / long: {check['workloads']}. As is: {plain['short_ms']:.1f} / "
                  f"{plain['baseline_ms']:.1f} / {plain['long_ms']:.1f} ms. CDP's CPU throttling at 4x on the page: "
                  f"{cdp['short_ms']:.1f} / {cdp['baseline_ms']:.1f} / {cdp['long_ms']:.1f} ms (it suspends the "
                  "page's main thread in a spinning signal handler; any effect on a worker is contention for this "
                  "machine's two cores). CDP asked to throttle the worker's own target: "
                  f"\"{check['cdp_on_worker_target']}\"."), "",
                  (f"bench/throttle.py at the nominal rates: {under(check['nominal'])}. Corrected once so that "
                  "Strata's short request and the baseline come out at the rate on average (their geometric mean; "
                  f"the devices of the grid): {under(check['calibrated'])}.")]
    return lines + [""]


# -- plots --------------------------------------------------------------------------------
def plots(results: dict, goals: dict, out: Path, stem: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    written = []
    models, names = list(results["models"]), results["strategies"]
    devices, links = results["devices"], results["links"]
    figure, axes = plt.subplots(len(models), len(devices), figsize=(4.5 * len(devices), 3.6 * len(models)),
                                squeeze=False, sharey="row")
    width = 0.8 / len(names)
    for row, model in enumerate(models):
        for col, rate in enumerate(devices):
            axis = axes[row][col]
            mine = {c["link"]: c for c in cells(results) if c["model"] == model and c["device"] == rate}
            for k, name in enumerate(names):
                values = [mine[link]["strategies"].get(name, {}).get("median_ms", float("nan")) for link in links]
                axis.bar([i + k * width for i in range(len(links))], values, width, label=name)
            axis.set_xticks([i + 0.4 - width / 2 for i in range(len(links))], links)
            axis.set_yscale("log")
            axis.set_title(f"{model}, {rate:g}x device")
            axis.grid(axis="y", alpha=0.3)
            if col == 0:
                axis.set_ylabel("median latency (ms)")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    figure.tight_layout()
    written.append(out / f"{stem}-latency.png")
    figure.savefig(written[-1], dpi=100)
    plt.close(figure)

    rows = [(m, d) for m in models for d in devices]
    table = [[next((c["ratio"] for c in goals["per_cell"] if (c["model"], c["device"], c["link"]) == (m, d, link)),
                   float("nan")) for link in links] for m, d in rows]
    figure, axis = plt.subplots(figsize=(2 + 1.4 * len(links), 1 + 0.45 * len(rows)))
    image = axis.imshow(table, cmap="RdYlGn_r", vmin=0.5, vmax=2.0, aspect="auto")
    axis.set_xticks(range(len(links)), links)
    axis.set_yticks(range(len(rows)), [f"{m} {d:g}x" for m, d in rows])
    for i, values in enumerate(table):
        for j, value in enumerate(values):
            axis.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
    axis.set_title("Strata adaptive / fastest strategy\n(median latency; target <= 1.1)", fontsize=10)
    figure.colorbar(image)
    figure.tight_layout()
    written.append(out / f"{stem}-ratio.png")
    figure.savefig(written[-1], dpi=100)
    plt.close(figure)
    return written


def write(results: dict, out: Path, stem: str) -> dict:
    """grid.json (results and targets), grid.md and the plots; returns the targets."""
    out.mkdir(parents=True, exist_ok=True)
    goals = targets(results)
    (out / f"{stem}.json").write_text(json.dumps({"results": results, "targets": goals}, indent=1))
    (out / f"{stem}.md").write_text(markdown(results, goals))
    plots(results, goals, out, stem)
    print("\n" + (out / f"{stem}.md").read_text().split("## Every strategy")[0], flush=True)
    return goals
