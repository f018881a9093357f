"""How long one plan takes in CPython, for models of a few hundred cut points."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from strata.planner import Context, Costs, Goal, Link, plan

CODECS = ("f32", "f32+z", "f16", "f16+z", "i8", "i8+z", "i8c", "i8c+z")


def time_plan(blocks: int, goal: Goal, repeats: int) -> float:
    """Median ms of plan() over `repeats` calls, with every codec and the branch on offer."""
    costs = Costs([1.0 + k % 7 for k in range(blocks)], [0.3 + k % 5 * 0.1 for k in range(blocks)],
                  [0.1] * blocks, {c: [1000 + 37 * k for k in range(blocks + 1)] for c in CODECS},
                  branch_ms=2.0, exit_rate=0.6, accuracy=0.93, branch_accuracy=0.92)
    context = Context(Link(20, 10e6, 20e6), Link(20, 100e6, 100e6))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        plan(costs, context, goal)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(runs: int, out: Path) -> int:
    rows = []
    for blocks in (50, 100, 300, 500):
        for goal in (Goal("latency"), Goal("energy"), Goal("accuracy", budget_ms=100)):
            ms = time_plan(blocks, goal, max(runs, 5) * 4)
            rows.append({"blocks": blocks, "goal": goal.kind, "codecs": len(CODECS), "median_ms": ms})
            print(f"  {blocks:4d} blocks, {len(CODECS)} codecs, goal {goal.kind:8s}: {ms:.2f} ms", flush=True)
    (out / "planner.json").write_text(json.dumps(rows, indent=1))
    return 0
