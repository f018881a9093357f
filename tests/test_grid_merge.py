"""Merging several grid runs into per-cell medians (bench/grid/merge.py), on made-up runs."""

from __future__ import annotations

import pytest

from bench.grid.merge import merge
from bench.grid.report import markdown, targets


def _summary(ms: float, plan: str) -> dict:
    return {"n": 10, "median_ms": ms, "p95_ms": 2 * ms, "agreement": 0.9, "up_bytes": 0.0, "down_bytes": 0.0,
            "energy_mj": ms, "exit_rate": 0.0, "fallbacks": 0, "tiers": {"browser": 10},
            "prediction_error": 0.1, "plans": {plan: 10}}


def _run(ort_ms: float, adaptive_ms: float, adaptive_plan: str) -> dict:
    start = {"ready_ms": 1000.0, "first_answer_ms": 2000.0 + ort_ms,
             "bytes": {k: {"wire": 10, "decoded": 10} for k in ("runtime", "model", "inputs", "page")}}
    cell = {"link": "wifi", "strategies": {"onnxruntime-web in the browser": _summary(ort_ms, "-"),
                                           "Strata adaptive": _summary(adaptive_ms, adaptive_plan),
                                           "oracle": {**_summary(ort_ms + 1, "2/2/f32"), "plan": "2/2/f32"}},
            "fixed": {"2/2/f32": _summary(ort_ms + 1, "2/2/f32")}}
    device = {"rate": 1.0, "baselines": {"onnxruntime-web in the browser": _summary(ort_ms, "-")}, "local": {},
              "neurosurgeon": None, "device_block_ms": [1.0, 1.0], "cells": [cell]}
    return {"mode": "full", "devices": [1.0], "links": ["wifi"], "wall_s": 600.0,
            "strategies": ["onnxruntime-web in the browser", "oracle", "Strata adaptive"],
            "models": {"ours": {"blocks": 2, "startup": {"strata": {"cold": start, "warm": start},
                                                         "onnxruntime-web": {"cold": start, "warm": start}},
                                "devices": [device]}}}


def test_cells_are_medians_over_the_runs_and_plans_add_up() -> None:
    runs = [_run(3.0, 9.0, "2/2/f32"), _run(5.0, 4.0, "0/2/f16"), _run(4.0, 5.0, "2/2/f32")]
    merged = merge(runs)
    cell = merged["models"]["ours"]["devices"][0]["cells"][0]["strategies"]
    assert cell["onnxruntime-web in the browser"]["median_ms"] == 4.0
    assert cell["Strata adaptive"]["median_ms"] == 5.0 and cell["Strata adaptive"]["p95_ms"] == 10.0
    assert cell["Strata adaptive"]["plans"] == {"2/2/f32": 20, "0/2/f16": 10}
    assert cell["oracle"]["plan"] == "2/2/f32" and cell["oracle"]["runs"] == 3
    assert merged["models"]["ours"]["startup"]["strata"]["cold"]["first_answer_ms"] == 2004.0
    assert merged["wall_s"] == 1800.0 and merged["run_count"] == 3
    goals = targets(merged)
    assert goals["per_cell"][0]["ratio"] == pytest.approx(5.0 / 4.0) and not goals["per_cell"][0]["ok"]
    assert "median of 3 full runs" in markdown(merged, goals)


def test_merge_needs_a_run() -> None:
    with pytest.raises(ValueError, match="at least one run"):
        merge([])
