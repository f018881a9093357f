"""The planner on hand-made cost tables. Runs in CPython (pytest) and inside Pyodide.

tests/test_planner_oracle.py checks it against brute force on random tables.
"""

import pytest

from strata.plan import Plan
from strata.planner import Context, Costs, Goal, Link, Replanner, evaluate, plan, plan_variants

WIFI = Link(rtt_ms=10, up_bps=50e6, down_bps=50e6)
SLOW = Link(rtt_ms=300, up_bps=1.5e6, down_bps=1.5e6)
CLOUD = Link(rtt_ms=10, up_bps=100e6, down_bps=100e6)


def costs(**changes):
    """Four blocks: cheap early ones, a heavy late one the cloud does fastest."""
    table = dict(
        device_ms=[2.0, 30.0, 60.0, 100.0], edge_ms=[0.2, 2.0, 4.0, 40.0], cloud_ms=[0.1, 1.0, 2.0, 4.0],
        cut_bytes={"f32": [4096, 32768, 16384, 8192, 40], "f16": [2048, 16384, 8192, 4096, 40]},
        branch_ms=3.0, exit_rate=0.6, accuracy=0.93, branch_accuracy=0.927,
    )
    table.update(changes)
    return Costs(**table)


def test_fast_link_offloads_early_and_uses_the_cloud_for_the_heavy_block():
    choice = plan(costs(), Context(WIFI, CLOUD), Goal("latency"))
    assert choice.plan.a == 1 and choice.plan.b < 4
    assert choice.plan.codec == "f16" and choice.plan.branch


def test_no_cloud_keeps_everything_at_the_edge():
    choice = plan(costs(), Context(WIFI, None), Goal("latency"))
    assert choice.plan.b == 4


def test_edge_down_and_a_device_that_cannot_run_all_blocks_is_reported():
    choice = plan(costs(device_ms=[2.0, None, None, None]), Context(None, None), Goal("latency"))
    assert choice.plan is None and "unreachable" in choice.reason


def test_edge_down_runs_everything_on_the_device_when_it_can():
    choice = plan(costs(), Context(None, None), Goal("latency"))
    assert choice.plan.a == 4


def test_privacy_never_uploads_raw_input():
    cheap_upload = costs(cut_bytes={"f32": [10, 10**7, 10**7, 10**7, 40]}, branch_ms=None)
    assert plan(cheap_upload, Context(WIFI, CLOUD), Goal("latency")).plan.a == 0
    assert plan(cheap_upload, Context(WIFI, CLOUD), Goal("latency", privacy=True)).plan.a >= 1


def test_energy_goal_prefers_less_device_compute_than_latency_goal_on_a_fast_device():
    fast_device = costs(device_ms=[1.0, 3.0, 6.0, 10.0], branch_ms=1.0)
    latency = plan(fast_device, Context(SLOW, CLOUD), Goal("latency"))
    energy = plan(fast_device, Context(SLOW, CLOUD), Goal("energy"))
    assert energy.energy_mj <= latency.energy_mj
    assert latency.latency_ms <= energy.latency_ms


def test_accuracy_goal_within_budget_and_the_fastest_when_none_fits():
    tight = plan(costs(), Context(WIFI, CLOUD), Goal("accuracy", budget_ms=1000))
    assert tight.meets_budget and not tight.plan.branch  # the main path alone is the most accurate
    impossible = plan(costs(), Context(SLOW, CLOUD), Goal("accuracy", budget_ms=1.0))
    assert not impossible.meets_budget and "fastest" in impossible.reason
    fastest = plan(costs(), Context(SLOW, CLOUD), Goal("latency"))
    assert impossible.latency_ms == fastest.latency_ms


def test_evaluate_matches_plan_for_the_chosen_plan():
    context, goal = Context(WIFI, CLOUD), Goal("latency")
    choice = plan(costs(), context, goal)
    again = evaluate(choice.plan, costs(), context, goal)
    assert abs(again.latency_ms - choice.latency_ms) < 1e-9
    assert evaluate(Plan(1, 2, "f16"), costs(), Context(WIFI, None), goal) is None


def test_the_latency_goal_serves_the_median_sample():
    # Everything on the device (no edge): 2 ms for the main path alone. With the branch, the
    # 55 % that exit take 1.5 ms and the rest 3 ms: a higher mean (2.175 ms), a lower median.
    table = costs(device_ms=[0.5, 0.5, 0.5, 0.5], branch_ms=1.0, exit_rate=0.55)
    choice = plan(table, Context(None, None), Goal("latency"))
    assert choice.plan.branch and choice.median_ms == choice.exit_ms == 1.5
    assert choice.latency_ms > 2.0  # the mean alone would have chosen the main path
    rare = plan(costs(device_ms=[0.5, 0.5, 0.5, 0.5], branch_ms=1.0, exit_rate=0.45), Context(None, None),
                Goal("latency"))
    assert not rare.plan.branch and rare.median_ms == rare.offload_ms == 2.0  # most go on: the median is the full path


def test_replanner_has_hysteresis():
    replanner = Replanner(margin=0.15)
    goal = Goal("latency")
    first = replanner.update(costs(), Context(WIFI, CLOUD), goal).plan
    slightly = Link(rtt_ms=11, up_bps=45e6, down_bps=45e6)
    assert replanner.update(costs(), Context(slightly, CLOUD), goal).plan == first
    assert replanner.switches == 0
    moved = replanner.update(costs(), Context(SLOW, CLOUD), goal).plan
    assert moved != first and replanner.switches == 1


def pruned(share, accuracy):
    """A variant whose blocks after conv1 cost `share` of the unpruned ones."""
    base = costs()
    return costs(device_ms=[base.device_ms[0]] + [ms * share for ms in base.device_ms[1:]],
                 edge_ms=[base.edge_ms[0]] + [ms * share for ms in base.edge_ms[1:]],
                 cloud_ms=[base.cloud_ms[0]] + [ms * share for ms in base.cloud_ms[1:]],
                 accuracy=accuracy, branch_accuracy=accuracy - 0.003)


VARIANTS = {"": costs(), "p50": pruned(0.3, 0.925), "p75": pruned(0.1, 0.90)}


def test_under_a_budget_the_most_accurate_variant_that_meets_it_wins():
    slow = Context(SLOW, CLOUD)
    # A budget is a deadline for each request: the samples that do not exit must meet it.
    times = {name: plan(c, slow, Goal("latency")).offload_ms for name, c in VARIANTS.items()}
    assert times[""] > times["p50"] > times["p75"]
    budget = (times[""] + times["p50"]) / 2  # the unpruned model misses it, p50 meets it
    choice = plan_variants(VARIANTS, slow, Goal("accuracy", budget_ms=budget))
    assert choice.plan.variant == "p50" and choice.meets_budget
    assert "most accurate" in choice.reason and "unpruned model would take" in choice.reason
    roomy = plan_variants(VARIANTS, slow, Goal("accuracy", budget_ms=times[""] * 2))
    assert roomy.plan.variant == "" and roomy.meets_budget


def test_when_no_variant_meets_the_budget_the_fastest_is_chosen_and_said_so():
    choice = plan_variants(VARIANTS, Context(SLOW, CLOUD), Goal("accuracy", budget_ms=0.5))
    assert choice.plan.variant == "p75" and not choice.meets_budget
    assert choice.reason.startswith("no variant meets the 0 ms budget; variant p75 is the fastest")


def test_latency_and_energy_goals_keep_the_unpruned_model_and_a_dropped_variant_is_not_offered():
    for kind in ("latency", "energy"):
        assert plan_variants(VARIANTS, Context(SLOW, CLOUD), Goal(kind)).plan.variant == ""
    replanner = Replanner()
    tight = Goal("accuracy", budget_ms=0.5)
    assert replanner.update(VARIANTS, Context(SLOW, CLOUD), tight).plan.variant == "p75"
    without = {name: c for name, c in VARIANTS.items() if name != "p75"}  # the edge refused it
    assert replanner.update(without, Context(SLOW, CLOUD), tight).plan.variant == "p50"


def test_goal_checks_its_arguments():
    with pytest.raises(ValueError, match="unknown goal"):
        Goal("speed")
    with pytest.raises(ValueError, match="budget"):
        Goal("accuracy")


def test_a_budget_must_be_milliseconds_above_zero():
    for budget in (0, -5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="above 0"):
            Goal("accuracy", budget_ms=budget)
    with pytest.raises(ValueError, match="needs a latency budget"):
        Goal("accuracy")
    assert Goal("accuracy", budget_ms=0.2).budget_ms == 0.2 and Goal("latency").budget_ms is None


def test_a_cut_whose_frame_exceeds_the_edges_limit_is_never_planned():
    # Uploading the raw input (a = 0) is fastest by far, but its frame is over the limit:
    # the planner takes the next best, and a plan at a = 0 no longer evaluates.
    sizes = {"f32": [2000, 10**5, 10**5, 1500, 40]}
    assert plan(costs(cut_bytes=sizes, branch_ms=None), Context(WIFI, CLOUD), Goal("latency")).plan.a == 0
    limited = costs(cut_bytes=sizes, branch_ms=None, max_frame_bytes=1999)
    assert plan(limited, Context(WIFI, CLOUD), Goal("latency")).plan.a == 3  # the one cut left that fits
    assert evaluate(Plan(0, 4, "f32", False), limited, Context(WIFI, CLOUD), Goal("latency")) is None
    # A "+z" frame is judged by its bound (frame_bytes), not by the ratio zlib got so far.
    zipped = costs(cut_bytes={"f32": [10**5] * 4 + [40], "f32+z": [1000, 10**5, 10**5, 10**5, 40]}, branch_ms=None)
    assert plan(zipped, Context(WIFI, CLOUD), Goal("latency")).plan.codec == "f32+z"
    bounded = costs(cut_bytes=zipped.cut_bytes, branch_ms=None, max_frame_bytes=50_000,
                    frame_bytes={"f32": [10**5 + 256] * 4, "f32+z": [10**5 + 300] * 4})
    assert plan(bounded, Context(WIFI, CLOUD), Goal("latency")).plan.a == 4  # no cut fits: the device runs all
