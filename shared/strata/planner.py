"""The planner: where each block runs, whether the branch runs, and how tensors travel.

One function, `plan()`, used unchanged by the browser worker and by the servers. For a
model of N blocks it picks a Plan (branch, a, b, codec) and predicts its latency,
device energy and accuracy from:

    costs    per-block times on the device, the edge and the cloud; bytes at each cut
             per codec; the branch's time, exit rate and accuracy
    context  the device <-> edge and edge <-> cloud links (RTT, up and down rates),
             how much slower the device and the edge are right now than when profiled
    goal     minimum latency, minimum device energy, or maximum accuracy within a
             latency budget; the privacy switch; which tiers are up

A plan whose INFER frame would not fit the edge's frame limit (Costs.max_frame_bytes,
from its HELLO) is never chosen: that cut, under that codec, is not offered.

The model of one sample, with p the branch's exit rate when it runs:

    always  = device(0..K) + branch_ms           with the branch (a >= K, its attach point;
                                                   K = 1 for our model: conv1)
            = device(0..a)                         without it (p = 0)
    rest    = device(0..a) - device(0..K)          with the branch, else 0
    remote  = edge(a..b) + [b < N: ec_up(bytes[b]) + cloud(b..N) + ec_down]
    latency = always + (1 - p) * (rest + up(bytes[a]) + remote + down)
    energy  = compute_w * (always + (1 - p) * rest)
              + (1 - p) * (transmit_w * up + receive_w * down + idle_w * remote)
    median  = always if p >= 1/2 else always + rest + up(bytes[a]) + remote + down

where a link moves n bytes in rtt/2 + 8n/rate. The latency goal minimizes the median
sample's latency (then the mean): a sample either exits or goes on, so the median is
the exit path when at least half exit, and the full path otherwise; this is what the
benchmarks judge (`strata bench grid`), and what a user sees most often. A latency
budget is a deadline for every request.

With pruned variants of the model (`plan_variants`), each variant is planned this way
and the goal picks among them. For a fixed (branch, a, codec) the best b only depends
on a through a prefix sum, so one backward pass gives min over b for every a: the
search is O(branch options x codecs x N), not O(N^2), and numpy scores all a at once.
`strata bench planner` times it. The module is a little over 400 lines because the cost
model, the search and the goals are one algorithm, kept in one place as the one planner.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from strata.plan import Plan

GOALS = ("latency", "energy", "accuracy")


@dataclass(frozen=True)
class Link:
    rtt_ms: float
    up_bps: float
    down_bps: float

    def up_ms(self, size: int) -> float:
        return self.rtt_ms / 2 + size * 8000 / self.up_bps

    def down_ms(self, size: int) -> float:
        return self.rtt_ms / 2 + size * 8000 / self.down_bps


@dataclass(frozen=True)
class PowerModel:
    """Device power by activity, in watts (Neurosurgeon style); W x ms = mJ.

    Defaults are typical of a phone: a busy big core near 2 W, a radio sending at
    about 1.3 W and receiving at 1 W, and 0.3 W while the device waits with its radio
    on. Change them to model another device; docs/planner.md discusses the choice.
    """

    compute_w: float = 2.0
    transmit_w: float = 1.3
    receive_w: float = 1.0
    idle_w: float = 0.3


@dataclass(frozen=True)
class Costs:
    """What running the model costs, per block k = 0..N-1 and per cut k = 0..N."""

    device_ms: list[float | None]  # None where the device cannot run the block
    edge_ms: list[float]
    cloud_ms: list[float]
    cut_bytes: dict[str, list[int]]  # codec -> bytes per sample entering block k; index N: the output
    branch_ms: float | None = None  # None: no branch
    exit_rate: float = 0.0  # share of samples the branch answers when it runs
    attach: int = 1  # the branch reads block `attach`'s input: the device runs [0, attach) first
    accuracy: float = 1.0  # main path alone
    branch_accuracy: float = 1.0  # the system with the branch and its exit rule
    codec_loss: dict[str, float] = field(default_factory=dict)  # accuracy lost per codec
    # The device's time for blocks [0, a), a = 0..N, as it runs them (strata.device_route:
    # onnxruntime-web blocks joined into one call), None where it cannot; without the
    # branch, and with it (the blocks before its attach point then run apart from the
    # rest, as the branch reads their output). None: the running sum of device_ms.
    device_run_ms: list[float | None] | None = None
    device_run_branch_ms: list[float | None] | None = None
    # The edge's frame limit (its HELLO's max_frame_bytes; None: it said none), and the
    # most bytes one sample's INFER frame can take at each cut k = 0..N-1 per codec
    # (strata.offload.infer_frame_bound; None: cut_bytes stand for them). A plan whose
    # frame would not fit is never chosen.
    max_frame_bytes: int | None = None
    frame_bytes: dict[str, list[int]] | None = None

    @property
    def blocks(self) -> int:
        return len(self.edge_ms)


@dataclass(frozen=True)
class Context:
    edge: Link | None  # None: the edge is unreachable
    cloud: Link | None  # edge <-> cloud; None: no cloud
    device_slowdown: float = 1.0  # device now takes this many times its profiled time
    edge_slowdown: float = 1.0  # the edge's queue makes its blocks take this many times longer


@dataclass(frozen=True)
class Goal:
    kind: str = "latency"
    budget_ms: float | None = None  # for "accuracy"
    privacy: bool = False  # raw input never leaves the device: a >= 1
    power: PowerModel = PowerModel()

    def __post_init__(self) -> None:
        if self.kind not in GOALS:
            raise ValueError(f"unknown goal {self.kind!r}: expected one of {', '.join(GOALS)}")
        if self.kind == "accuracy" and self.budget_ms is None:
            raise ValueError("the accuracy goal needs a latency budget (budget_ms)")
        if self.budget_ms is not None and not (isinstance(self.budget_ms, int | float)
                                               and math.isfinite(self.budget_ms) and self.budget_ms > 0):
            raise ValueError(f"a latency budget must be a number of milliseconds above 0; got {self.budget_ms!r}")


@dataclass(frozen=True)
class Choice:
    plan: Plan | None  # None: nothing is feasible (no edge, and the device cannot run every block)
    latency_ms: float  # expected, over the branch's exits
    energy_mj: float
    accuracy: float
    meets_budget: bool = True
    reason: str = ""
    exit_ms: float = 0.0  # latency of a sample the branch answers
    offload_ms: float = 0.0  # latency of a sample that goes on

    median_ms: float = 0.0  # latency of the median sample: exit_ms if most exit, else offload_ms

    def predict(self, exited: bool) -> float:
        """The latency predicted for one sample, knowing whether it exited."""
        return self.exit_ms if exited else self.offload_ms

    def objective(self, goal: Goal) -> tuple:
        """Smaller is better."""
        return _objective(goal, self.median_ms, self.latency_ms, self.energy_mj, self.accuracy, self.offload_ms)


def _remote(costs: Costs, context: Context) -> tuple[np.ndarray, np.ndarray]:
    """For every a: the best b, and the time from the edge's first block to the logits
    back at the edge (edge blocks [a, b), then the cloud's hop and blocks [b, N)).

    tail[b] = edge_prefix[b] + cloud part starting at b; best b for a = argmin of tail
    over b >= a, a running minimum from the right: O(N).
    """
    n = costs.blocks
    edge_prefix = np.concatenate(([0.0], np.cumsum(costs.edge_ms))) * context.edge_slowdown
    cloud_suffix = np.concatenate((np.cumsum(costs.cloud_ms[::-1])[::-1], [0.0]))
    f32 = np.asarray(costs.cut_bytes["f32"], np.float64)
    if context.cloud is None:
        cloud = np.full(n + 1, np.inf)
    else:
        link = context.cloud
        cloud = link.rtt_ms + f32 * 8000 / link.up_bps + cloud_suffix + f32[n] * 8000 / link.down_bps
    cloud[n] = 0.0
    tail = edge_prefix + cloud
    best_b = np.empty(n + 1, np.int64)
    best = n
    for a in range(n, -1, -1):
        if tail[a] < tail[best]:
            best = a
        best_b[a] = best
    return best_b, tail[best_b] - edge_prefix


def _device_prefix(costs: Costs, context: Context, branch: bool) -> np.ndarray:
    """Device time of blocks [0, a) for each a; NaN from the first block it cannot run."""
    run = costs.device_run_branch_ms if branch else costs.device_run_ms
    if run is not None:
        return np.array([np.nan if ms is None else ms for ms in run], np.float64) * context.device_slowdown
    times = np.array([np.nan if ms is None else ms for ms in costs.device_ms], np.float64)
    return np.concatenate(([0.0], np.cumsum(times))) * context.device_slowdown


def _table(branch: bool, codec: str, costs: Costs, context: Context, goal: Goal, device: np.ndarray,
           remote_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray, np.ndarray]:
    """For every a, plans with this branch and codec: (mean latency, energy, accuracy,
    latency of a sample that exits, latency of one that does not, the median's latency)."""
    n, power = costs.blocks, goal.power
    p = costs.exit_rate if branch else 0.0
    # Always paid: the blocks before the attach point and the branch when it runs; the
    # device's further blocks and everything remote are paid only by the samples that do not exit.
    first = np.full(n + 1, device[costs.attach]) if branch else device
    always = first + (costs.branch_ms * context.device_slowdown if branch else 0.0)
    rest = device - first
    up = down = np.zeros(n + 1)
    if context.edge is not None:
        link = context.edge
        up = link.rtt_ms / 2 + np.asarray(costs.cut_bytes[codec], np.float64) * 8000 / link.up_bps
        down = np.full(n + 1, link.rtt_ms / 2 + costs.cut_bytes["f32"][n] * 8000 / link.down_bps)
        up[n] = down[n] = 0.0
    onward = always + rest + up + remote_ms + down
    latency = always + (1 - p) * (onward - always)
    energy = power.compute_w * (always + (1 - p) * rest) + (1 - p) * (
        power.transmit_w * up + power.receive_w * down + power.idle_w * remote_ms)
    accuracy = (costs.branch_accuracy if branch else costs.accuracy) - costs.codec_loss.get(codec, 0.0)
    return latency, energy, accuracy, always, onward, always if p >= 0.5 else onward


def frame_fits(costs: Costs, codec: str) -> np.ndarray:
    """For every a = 0..N: whether one sample's INFER frame from cut a under `codec` fits
    the edge's frame limit (always at a = N: nothing is sent)."""
    fits = np.ones(costs.blocks + 1, bool)
    if costs.max_frame_bytes is not None:
        sizes = (costs.frame_bytes or costs.cut_bytes)[codec][:costs.blocks]
        fits[:costs.blocks] = np.asarray(sizes, np.float64) <= costs.max_frame_bytes
    return fits


def _meets(goal: Goal, onward: float) -> bool:
    """A latency budget is a deadline for every request: a plan meets it when a sample
    that does not exit (the slower kind) still arrives in time."""
    return goal.budget_ms is None or onward <= goal.budget_ms


def _objective(goal: Goal, median: float, latency: float, energy: float, accuracy: float, onward: float) -> tuple:
    """Smaller is better."""
    if goal.kind == "latency":
        return (median, latency)
    if goal.kind == "energy":
        return (energy, latency)
    meets = _meets(goal, onward)
    return (not meets, -accuracy if meets else 0.0, latency)


def _allowed(costs: Costs, context: Context, goal: Goal, device: np.ndarray, branch: bool) -> np.ndarray:
    """Which a are possible: the device can run [0, a), the constraints hold."""
    n = costs.blocks
    a = np.arange(n + 1)
    ok = ~np.isnan(device)
    if context.edge is None:
        ok &= a == n
    if goal.privacy:
        ok &= a >= 1
    if branch:
        ok &= a >= costs.attach
    return ok


def plan(costs: Costs, context: Context, goal: Goal) -> Choice:
    """The best plan for the goal; if none meets the latency budget, the fastest, saying so.

    Scores every (branch, codec) pair for all a at once, each a with its best b.
    """
    n = costs.blocks
    best_b, remote_ms = _remote(costs, context) if context.edge else (np.full(n + 1, n), np.zeros(n + 1))
    best, best_key = None, None
    for branch in ((False, True) if costs.branch_ms is not None else (False,)):
        device = _device_prefix(costs, context, branch)
        allowed = _allowed(costs, context, goal, device, branch)
        if not allowed.any():
            continue
        for codec in sorted(costs.cut_bytes):
            latency, energy, accuracy, exits, onward, median = _table(branch, codec, costs, context, goal, device,
                                                                      remote_ms)
            allowed_here = allowed & frame_fits(costs, codec)
            allowed_here[n] &= codec == "f32"  # nothing crosses a link at a = N: f32 stands for every codec
            if not allowed_here.any():
                continue
            # For one (branch, codec) the accuracy is fixed: under a budget, the fastest a
            # among those that meet it, or the fastest of all if none does.
            if goal.kind == "accuracy" and (allowed_here & (onward <= goal.budget_ms)).any():
                allowed_here &= onward <= goal.budget_ms
            score = {"energy": energy, "latency": median + latency * 1e-9}.get(goal.kind, latency)
            a = int(np.argmin(np.where(allowed_here, score, np.inf)))
            key = _objective(goal, float(median[a]), float(latency[a]), float(energy[a]), accuracy, float(onward[a]))
            if best_key is None or key < best_key:
                best, best_key = (branch, a, codec, float(latency[a]), float(energy[a]), accuracy,
                                  float(exits[a]), float(onward[a]), float(median[a])), key
    if best is None:
        return Choice(None, float("inf"), float("inf"), costs.branch_accuracy, False,
                      "no plan is feasible: the edge is unreachable (or no frame fits its frame limit) and the device "
                      "cannot run every block; the branch answers alone")
    branch, a, codec, latency, energy, accuracy, exits, onward, median = best
    meets = _meets(goal, onward)
    reason = "" if goal.kind != "accuracy" or meets else f"no plan meets the {goal.budget_ms:.0f} ms budget; this is the fastest"
    return Choice(Plan(a, int(best_b[a]) if a < n else n, codec, branch), latency, energy, accuracy, meets, reason,
                  exits, onward, median)


def _named(choice: Choice, variant: str) -> Choice:
    return choice if choice.plan is None else replace(choice, plan=replace(choice.plan, variant=variant))


def _label(variant: str) -> str:
    return f"variant {variant}" if variant else "the unpruned model"


def plan_variants(variants: Mapping[str, Costs], context: Context, goal: Goal) -> Choice:
    """The model variant and its plan together ("" is the unpruned model).

    Only the accuracy goal trades accuracy for time, so the latency and energy goals
    keep the unpruned model. Under a budget: the most accurate variant whose best plan
    meets it; if none does, the fastest one, and the reason says so. O(variants x plan()).
    """
    if goal.kind != "accuracy" or len(variants) == 1:
        name = "" if "" in variants else next(iter(variants))
        return _named(plan(variants[name], context, goal), name)
    choices = {name: _named(plan(costs, context, goal), name) for name, costs in variants.items()}
    feasible = [choice for choice in choices.values() if choice.plan is not None]
    if not feasible:
        return choices.get("") or next(iter(choices.values()))
    budget = f"{goal.budget_ms:.0f} ms"
    meeting = [choice for choice in feasible if choice.meets_budget]
    if meeting:
        best = max(meeting, key=lambda choice: (choice.accuracy, -choice.latency_ms))
        reason = (f"{_label(best.plan.variant)}: the most accurate that meets the {budget} budget "
                  f"({best.latency_ms:.1f} ms predicted, accuracy {best.accuracy:.2%})")
        unpruned = choices.get("")
        if best.plan.variant and unpruned is not None and unpruned.plan is not None and not unpruned.meets_budget:
            reason += f"; the unpruned model would take {unpruned.latency_ms:.1f} ms"
    else:
        best = min(feasible, key=lambda choice: choice.latency_ms)
        reason = (f"no variant meets the {budget} budget; {_label(best.plan.variant)} is the fastest "
                  f"({best.latency_ms:.1f} ms predicted)")
    return replace(best, reason=reason)


def evaluate(current: Plan, costs: Costs, context: Context, goal: Goal) -> Choice | None:
    """Predictions for a given plan under a new context; None if it is no longer feasible."""
    n = costs.blocks
    device = _device_prefix(costs, context, current.branch)
    if current.b > n or not _allowed(costs, context, goal, device, current.branch)[current.a]:
        return None
    if current.b < n and context.cloud is None:
        return None
    if current.branch and costs.branch_ms is None or not frame_fits(costs, current.codec)[current.a]:
        return None
    remote_ms = np.zeros(n + 1)
    if current.a < n:
        edge = sum(costs.edge_ms[current.a:current.b]) * context.edge_slowdown
        cloud = 0.0
        if current.b < n:
            link, f32 = context.cloud, costs.cut_bytes["f32"]
            cloud = link.up_ms(f32[current.b]) + sum(costs.cloud_ms[current.b:]) + link.down_ms(f32[n])
        remote_ms[current.a] = edge + cloud
    latency, energy, accuracy, exits, onward, median = _table(current.branch, current.codec, costs, context, goal,
                                                              device, remote_ms)
    a = current.a
    return Choice(current, float(latency[a]), float(energy[a]), accuracy, _meets(goal, float(onward[a])), "",
                  float(exits[a]), float(onward[a]), float(median[a]))


class Replanner:
    """Keeps a plan until another is better by more than `margin`: no flapping.

    The current plan is re-predicted under each new context; a new plan replaces it
    only if the current one became infeasible, stopped meeting the budget while another
    meets it, or the best is better by more than the margin on the goal's objective.
    """

    def __init__(self, margin: float = 0.15) -> None:
        self.margin = margin
        self.current: Choice | None = None
        self.switches = 0

    def update(self, costs: Costs | Mapping[str, Costs], context: Context, goal: Goal) -> Choice:
        """Re-plan under a new context; `costs` per variant name, or one Costs (unpruned)."""
        variants = {"": costs} if isinstance(costs, Costs) else costs
        best = plan_variants(variants, context, goal)
        current = self.current.plan if self.current else None
        kept = None
        if current is not None and current.variant in variants:
            kept = evaluate(current, variants[current.variant], context, goal)
            if kept is not None and best.plan is not None and best.plan.variant == current.variant:
                kept = replace(kept, reason=best.reason)
        if kept is None or self._better(best, kept, goal):
            if self.current is not None and best.plan != self.current.plan:
                self.switches += 1
            self.current = best
        else:
            self.current = kept
        return self.current

    def _better(self, best: Choice, kept: Choice, goal: Goal) -> bool:
        if best.plan == kept.plan:
            return False
        if goal.kind == "accuracy":
            if best.meets_budget != kept.meets_budget:
                return best.meets_budget
            if best.accuracy != kept.accuracy:
                return best.accuracy > kept.accuracy
        if goal.kind == "latency":  # a median better by the margin; or as good, and a mean better by it
            return best.median_ms < kept.median_ms * (1 - self.margin) or (
                best.median_ms <= kept.median_ms and best.latency_ms < kept.latency_ms * (1 - self.margin))
        key = "energy_mj" if goal.kind == "energy" else "latency_ms"
        return getattr(best, key) < getattr(kept, key) * (1 - self.margin)
