"""The planner against brute force: every (branch, a, b, codec) tried on random tables."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from strata.plan import Plan
from strata.planner import Context, Costs, Goal, Link, PowerModel, evaluate, plan

ms = st.floats(0.01, 200.0)
link = st.builds(Link, rtt_ms=st.floats(0.1, 400.0), up_bps=st.floats(1e5, 1e9), down_bps=st.floats(1e5, 1e9))


@st.composite
def tables(draw: st.DrawFn) -> Costs:
    n = draw(st.integers(1, 7))
    runnable = draw(st.integers(1, n))  # the device runs a prefix of the blocks
    device = [draw(ms) for _ in range(runnable)] + [None] * (n - runnable)
    f32 = [draw(st.integers(4, 10**6)) for _ in range(n + 1)]
    cut_bytes = {"f32": f32, "f16": [max(1, b // 2) for b in f32], "i8+z": [max(1, b // 7) for b in f32]}
    branch = draw(st.one_of(st.none(), ms))
    return Costs(device, [draw(ms) for _ in range(n)], [draw(ms) for _ in range(n)], cut_bytes, branch_ms=branch,
                 exit_rate=draw(st.floats(0, 1)), attach=draw(st.integers(1, n)), accuracy=draw(st.floats(0.5, 1)),
                 branch_accuracy=draw(st.floats(0.5, 1)), codec_loss={"i8+z": draw(st.floats(0, 0.05))})


goals = st.builds(Goal, kind=st.sampled_from(["latency", "energy", "accuracy"]), budget_ms=st.floats(1, 2000),
                  privacy=st.booleans(), power=st.builds(PowerModel, st.floats(0.5, 4), st.floats(0.1, 3),
                                                         st.floats(0.1, 3), st.floats(0, 1)))
contexts = st.builds(Context, edge=st.one_of(st.none(), link), cloud=st.one_of(st.none(), link),
                     device_slowdown=st.floats(0.5, 8), edge_slowdown=st.floats(1, 5))


def brute_force(costs: Costs, context: Context, goal: Goal):
    n = costs.blocks
    everything = [Plan(a, b, codec, branch) for branch, a, b, codec in itertools.product(
        (False, True), range(n + 1), range(n + 1), sorted(costs.cut_bytes)) if a <= b]
    feasible = []
    for candidate in everything:
        if candidate.branch and (costs.branch_ms is None or candidate.a < costs.attach):
            continue
        if candidate.a == n and (candidate.b != n or candidate.codec != "f32"):
            continue  # nothing crosses a link: one representative
        choice = evaluate(candidate, costs, context, goal)
        if choice is not None:
            feasible.append(choice)
    return min(feasible, key=lambda c: c.objective(goal)) if feasible else None


@settings(max_examples=400, deadline=None)
@given(tables(), contexts, goals)
def test_planner_finds_the_brute_force_optimum(costs: Costs, context: Context, goal: Goal) -> None:
    fast, slow = plan(costs, context, goal), brute_force(costs, context, goal)
    if slow is None:
        assert fast.plan is None
        return
    assert fast.plan is not None
    assert fast.objective(goal) <= tuple(v + 1e-9 * max(1.0, abs(v)) for v in slow.objective(goal))
    again = evaluate(fast.plan, costs, context, goal)
    assert abs(again.latency_ms - fast.latency_ms) <= 1e-6 * max(1.0, fast.latency_ms)
    if goal.privacy:
        assert fast.plan.a >= 1

