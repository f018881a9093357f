"""`strata bench grid --quick` in real Chromium: every part of the report, with sane numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.grid.cells import ADAPTIVE, EDGE, ORACLE, ORT_WEB
from edge_server.config import REPO


def test_quick_grid_reports_every_strategy_and_the_start_up(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "strata.cli", "bench", "grid", "--quick", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Strata adaptive" in done.stdout  # the table is printed as well as written
    data = json.loads((tmp_path / "grid-quick.json").read_text())
    results, targets = data["results"], data["targets"]
    assert results["mode"] == "quick" and list(results["models"]) == ["ours"]

    ours = results["models"]["ours"]
    [device] = ours["devices"]
    [cell] = device["cells"]
    assert device["rate"] == 1.0 and cell["link"] == "wifi"
    assert set(cell["strategies"]) == {ORT_WEB, EDGE, ADAPTIVE, ORACLE}
    for name, summary in cell["strategies"].items():
        assert 0 < summary["median_ms"] <= summary["p95_ms"] < 10_000, name
        assert 0 <= summary["agreement"] <= 1 and summary["energy_mj"] > 0 and summary["n"] >= 3, name
    assert cell["strategies"][EDGE]["up_bytes"] > 0 and set(cell["strategies"][EDGE]["tiers"]) == {"edge"}
    assert cell["strategies"][ORT_WEB]["up_bytes"] == 0
    assert cell["strategies"][ORACLE]["median_ms"] == min(s["median_ms"] for s in cell["fixed"].values())

    for runtime in ("strata", "onnxruntime-web"):
        cold = ours["startup"][runtime]["cold"]
        assert 0 < cold["ready_ms"] <= cold["first_answer_ms"] < 120_000, runtime
        assert cold["bytes"]["runtime"]["wire"] > 1_000_000 and cold["bytes"]["model"]["wire"] > 0, runtime
    assert ours["startup"]["onnxruntime-web"]["cold"]["bytes"]["model"]["wire"] == ours["full_onnx_bytes"]

    overhead = device["overhead"]  # Strata's own cost over the same graph called bare, interleaved
    assert overhead["n"] >= 10 and 0 < overhead["bare_ms"] < 1000 and 0 < overhead["strata_ms"] < 1000, overhead
    assert overhead["overhead_ms"] == overhead["strata_ms"] - overhead["bare_ms"]
    [row] = targets["overhead"]
    assert row["device"] == 1.0 and row["ok"] == (overhead["overhead_ms"] <= 0.3)

    [row] = targets["per_cell"]
    assert row["ratio"] > 0 and row["fastest"] in cell["strategies"]
    assert targets["startup"]["ours"]["model_bytes_gain"] > 1
    for name in ("grid-quick.md", "grid-quick-latency.png", "grid-quick-ratio.png"):
        assert (tmp_path / name).stat().st_size > 500, name
