"""The browser's side of classifying one image, with no I/O: the worker and the Python
clients (evaluation, load generator, tests) drive the very same steps.

    start()    conv1 and, if the plan says so, the branch; either a final answer (the
               branch is confident) or the INFER request to send
    finish()   turn the edge's RESULT into an answer, with the full timing breakdown
    fall_back() the edge is unreachable or too slow: the branch answers, marked so
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from strata.exits import should_exit, softmax
from strata.executor import BrowserModel
from strata.offload import InferRequest, Result, split_transfer
from strata.plan import Plan, PlanError
from strata.preprocess import prepare

BlockRunner = Callable[[np.ndarray, int, int], np.ndarray]  # (x, start, stop) -> output of block stop-1


@dataclass
class Answer:
    label: int
    confidence: float  # softmax probability of the label
    tier: str  # where the last block ran: "browser", "edge" or "cloud"
    timing: dict = field(default_factory=dict)  # milliseconds per stage
    fallback: str | None = None  # why the plan was not followed, if it was not
    exited: bool = False  # the branch was confident and answered

    def to_dict(self) -> dict:
        return {"label": self.label, "confidence": self.confidence, "tier": self.tier,
                "timing": self.timing, "fallback": self.fallback, "exited": self.exited}


@dataclass
class Pending:
    """A sample after the device's share: answered already, or waiting for the edge."""

    answer: Answer | None
    request: InferRequest | None
    branch_logits: np.ndarray | None
    image: np.ndarray  # kept to run the branch on if we must fall back
    features: np.ndarray | None  # conv1's output, when the device ran conv1
    started: float  # perf_counter() at start, in seconds
    timing: dict = field(default_factory=dict)  # device-side stages measured so far


def _answer(logits: np.ndarray, tier: str, timing: dict, fallback: str | None = None, exited: bool = False) -> Answer:
    probs = softmax(logits.astype(np.float64))[0]
    label = int(probs.argmax())
    return Answer(label, float(probs[label]), tier, timing, fallback, exited)


def start(model: BrowserModel, image: np.ndarray, plan: Plan, request_id: int, blocks: int,
          run_blocks: BlockRunner | None = None) -> Pending:
    """Run the device's share of the plan on one image (batch of 1).

    Blocks [1, a) beyond conv1 run through `run_blocks(x, start, stop)` (the numpy float
    blocks, loaded when a plan first needs them); with a = N (`blocks`) the device
    answers alone.
    """
    begin = time.perf_counter()
    if plan.a > 1 and run_blocks is None:
        raise PlanError(f"a plan with a={plan.a} needs the device's float blocks, which are not loaded")
    batch = image[None] if image.ndim == 2 else image
    timing: dict = {}
    logits = features = None
    if plan.a == 0:
        x = prepare(batch, model.mean, model.std)
    else:
        features = x = model.conv1(batch)
        timing["conv1_ms"] = (time.perf_counter() - begin) * 1000
        if plan.branch:
            branch_begin = time.perf_counter()
            logits = model.branch_logits(features)
            timing["branch_ms"] = (time.perf_counter() - branch_begin) * 1000
            if bool(should_exit(logits, model.rule, model.threshold)[0]):
                return Pending(_answer(logits, "browser", _device_timing(timing, begin), exited=True), None, logits,
                               batch, features, begin)
    if plan.a > 1:
        x = run_blocks(x, 1, plan.a)
    if plan.a == blocks:  # the whole main path ran here
        return Pending(_answer(x, "browser", _device_timing(timing, begin)), None, logits, batch, features, begin)
    device_ms = (time.perf_counter() - begin) * 1000
    return Pending(None, InferRequest(request_id, plan, x, device_ms), logits, batch, features, begin, timing)


def _device_timing(timing: dict, begin: float) -> dict:
    device_ms = (time.perf_counter() - begin) * 1000
    return {**timing, "device_compute_ms": device_ms, "total_ms": device_ms}


def finish(pending: Pending, result: Result, up_bytes: int, down_bytes: int, rtt_ms: float | None) -> Answer:
    """The edge's RESULT as an answer; the network time is split into uplink and downlink."""
    total = (time.perf_counter() - pending.started) * 1000
    timing = {**pending.timing, **result.timing}
    device = pending.request.device_ms if pending.request else 0.0
    network = total - device - timing.get("edge_total_ms", 0.0)
    timing["uplink_ms"], timing["downlink_ms"] = split_transfer(network, up_bytes, down_bytes, rtt_ms)
    timing.update(device_compute_ms=device, total_ms=total, up_bytes=up_bytes, down_bytes=down_bytes)
    return _answer(result.logits, result.tier, timing, result.fallback)


def fall_back(model: BrowserModel, pending: Pending, reason: str) -> Answer:
    """Answer with the branch when the edge cannot: better a marked guess than nothing."""
    logits = pending.branch_logits
    if logits is None:
        features = pending.features if pending.features is not None else model.conv1(pending.image)
        logits = model.branch_logits(features)
    total = (time.perf_counter() - pending.started) * 1000
    return _answer(logits, "browser", {"device_compute_ms": pending.request.device_ms, "total_ms": total}, reason)
