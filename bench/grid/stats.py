"""Per-request records and their summaries for the grid: latency, accuracy, bytes, energy.

Device energy comes from the planner's power model (strata.planner.PowerModel) applied
to each request's measured times, as the planner's own energy formula does with its
predictions: compute power over the device's compute time, transmit and receive power
over the uplink and downlink times the worker measured, idle power while the edge and
the cloud work (the edge's frame-in to result-out time). W x ms = mJ.
"""

from __future__ import annotations

import statistics
from collections import Counter

from strata.planner import PowerModel

POWER = PowerModel()


def energy_mj(timing: dict, power: PowerModel = POWER) -> float:
    """Device energy of one request from its measured timing."""
    compute = timing.get("device_compute_ms", timing["total_ms"])
    return (power.compute_w * compute + power.transmit_w * timing.get("uplink_ms", 0.0)
            + power.receive_w * timing.get("downlink_ms", 0.0) + power.idle_w * timing.get("edge_total_ms", 0.0))


def from_strata(answer: dict) -> dict:
    """One answer of Strata's worker as a record."""
    timing = answer["timing"]
    return {"ms": answer["page_ms"], "worker_ms": timing["total_ms"], "correct": answer["label"] == answer["truth"],
            "up_bytes": timing.get("up_bytes", 0), "down_bytes": timing.get("down_bytes", 0),
            "energy_mj": energy_mj(timing), "tier": answer["tier"], "exited": answer.get("exited", False),
            "fallback": answer.get("fallback"), "plan": answer["plan"], "predicted_ms": answer.get("predicted_ms")}


def from_ort(result: dict, label: int) -> dict:
    """One answer of the onnxruntime-web baseline: all compute, on the device."""
    return {"ms": result["page_ms"], "worker_ms": result["ms"], "correct": result["label"] == label, "up_bytes": 0, "down_bytes": 0,
            "energy_mj": POWER.compute_w * result["ms"], "tier": "browser", "exited": False, "fallback": None,
            "plan": None, "predicted_ms": None}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarize(records: list[dict]) -> dict:
    """Median and p95 latency, agreement (or accuracy), median bytes and energy per request."""
    times = [r["ms"] for r in records]
    # The planner predicts what the worker measures; the page adds the call's bridge.
    errors = [abs(r["predicted_ms"] - r["worker_ms"]) / r["worker_ms"] for r in records if r["predicted_ms"]]
    plans = Counter(plan_key(r["plan"]) for r in records if r["plan"])
    return {"n": len(records), "median_ms": statistics.median(times), "p95_ms": percentile(times, 0.95),
            "mean_ms": statistics.mean(times), "agreement": sum(r["correct"] for r in records) / len(records),
            "up_bytes": statistics.median(r["up_bytes"] for r in records),
            "down_bytes": statistics.median(r["down_bytes"] for r in records),
            "energy_mj": statistics.median(r["energy_mj"] for r in records),
            "exit_rate": sum(r["exited"] for r in records) / len(records),
            "fallbacks": sum(bool(r["fallback"]) for r in records),
            "tiers": dict(Counter(r["tier"] for r in records)),
            "prediction_error": statistics.median(errors) if errors else None,
            "plans": dict(plans.most_common())}


def plan_key(plan: dict) -> str:
    """A plan header as a short stable name: a/b/codec[/branch][/variant]."""
    key = f"{plan['a']}/{plan['b']}/{plan['codec']}" + ("/branch" if plan.get("branch") else "")
    return key + (f"/{plan['variant']}" if plan.get("variant") else "")
