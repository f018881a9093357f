"""Several runs of the grid as one: per cell and strategy, the median over the runs.

One run's cells move by about ±20 % on this shared machine (the throttled devices most),
so the report that counts is the median of several (`strata bench grid --repeat 3`).
Latencies, bytes, energy, agreement and start-up times are medians over the runs; the
plans each strategy used are added up; the rest (model sizes, the throttle check) is
the first run's. `strata bench grid --repeat N` keeps each run's own results beside the
merged ones, in grid-runs/.
"""

from __future__ import annotations

import copy
import statistics
from collections import Counter

SUMMED = ("plans", "tiers")  # per-strategy counters: added up over the runs


def _summary(summaries: list[dict]) -> dict:
    merged = copy.deepcopy(summaries[0])
    for key, value in merged.items():
        values = [s.get(key) for s in summaries]
        if key in SUMMED:
            merged[key] = dict(sum((Counter(v or {}) for v in values), Counter()).most_common())
        elif key == "plan" and all(isinstance(v, str) for v in values):
            merged[key] = Counter(values).most_common(1)[0][0]  # the oracle's plan in most runs
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            numbers = [v for v in values if isinstance(v, (int, float))]
            merged[key] = statistics.median(numbers) if numbers else value
    merged["runs"] = len(summaries)
    return merged


def _strategies(per_run: list[dict]) -> dict:
    """{name: summary} from each run: the median summary of the strategies all runs have."""
    names = [name for name in per_run[0] if all(name in run for run in per_run)]
    return {name: _summary([run[name] for run in per_run]) for name in names}


def _startup(per_run: list[dict]) -> dict:
    merged = copy.deepcopy(per_run[0])
    for runtime, first in merged.items():
        for cache in ("cold", "warm"):
            for key in ("ready_ms", "first_answer_ms"):
                first[cache][key] = statistics.median(run[runtime][cache][key] for run in per_run)
    return merged


def merge(runs: list[dict]) -> dict:
    """The grid's results of several runs (each as `strata bench grid` writes under
    "results") as one, with per-cell medians."""
    if not runs:
        raise ValueError("merge needs at least one run")
    merged = copy.deepcopy(runs[0])
    merged["wall_s"] = sum(run["wall_s"] for run in runs)
    merged["run_count"] = len(runs)
    for name, model in merged["models"].items():
        models = [run["models"][name] for run in runs]
        if "startup" in model:
            model["startup"] = _startup([m["startup"] for m in models])
        for d, device in enumerate(model["devices"]):
            devices = [m["devices"][d] for m in models]
            device["baselines"] = _strategies([dev["baselines"] for dev in devices])
            device["local"] = _strategies([dev["local"] for dev in devices])
            if all("overhead_ms" in dev.get("overhead", {}) for dev in devices):
                device["overhead"] = _summary([dev["overhead"] for dev in devices])
            for c, cell in enumerate(device["cells"]):
                cell["strategies"] = _strategies([dev["cells"][c]["strategies"] for dev in devices])
                cell["fixed"] = _strategies([dev["cells"][c]["fixed"] for dev in devices])
    return merged
