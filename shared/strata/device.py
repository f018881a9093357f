"""The browser's side of classifying one image, with no I/O: the worker and the Python
clients (evaluation, load generator, tests) drive the very same steps.

    start()    conv1 and, if the plan says so, the branch; a final answer (the branch
               is confident), the INFER request to send, or the tensor for the device's
               further blocks [1, a) (or [0, a), when conv1 runs with them instead; or
               [0, K) first, for a branch attached at K that the bundle holds no blocks of)
    after_blocks()  those blocks ran (in whichever executor the worker chose, which may
               be asynchronous): the branch if it waits for them, then the answer if
               a = N, else the INFER request, or the device's blocks [K, a)
    finish()   turn the edge's RESULT into an answer, with the full timing breakdown
    fall_back() the edge is unreachable or too slow: the branch (or the device) answers, marked so

An answer reads the model's output by its kind (the manifest's output.kind): softmax
over logits, probabilities as they are, and for any other tensor no label but a
summary (read_output). It is called uncertain when its confidence is below
LOW_CONFIDENCE, or when the branch ran, did not answer, and the main path disagrees.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from strata.exits import should_exit, softmax
from strata.executor import BrowserModel
from strata.offload import InferRequest, Result, split_transfer
from strata.plan import Plan


KINDS = ("logits", "probabilities", "tensor")  # the manifest's output.kind (edge_server/split/contract.py)
LOW_CONFIDENCE = 0.5  # below even odds the label is more likely wrong than right: called uncertain
TOP_VALUES = 5  # a tensor summary's largest values


@dataclass
class Answer:
    label: int  # -1 for an output that is not per-class scores (kind "tensor")
    confidence: float | None  # probability of the label; None without one
    tier: str  # where the last block ran: "browser", "edge" or "cloud"
    timing: dict = field(default_factory=dict)  # milliseconds per stage
    fallback: str | None = None  # why the plan was not followed, if it was not
    exited: bool = False  # the branch was confident and answered
    branch_label: int | None = None  # the branch's label, when it ran and did not answer
    uncertain: str | None = None  # "low-confidence" or "branch-disagrees", else None
    summary: dict | None = None  # kind "tensor": shape, min, max, mean, top values (summarize())

    def to_dict(self) -> dict:
        return {"label": self.label, "confidence": self.confidence, "tier": self.tier,
                "timing": self.timing, "fallback": self.fallback, "exited": self.exited,
                "branch_label": self.branch_label, "uncertain": self.uncertain, "summary": self.summary}


@dataclass
class Pending:
    """A sample after the device's share so far: answered, waiting for the device's
    further blocks (`blocks` is set), or waiting for the edge (`request` is set)."""

    answer: Answer | None
    request: InferRequest | None
    branch_logits: np.ndarray | None
    image: np.ndarray  # kept to run the branch on if we must fall back
    features: np.ndarray | None  # the branch's input (conv1's output for ours), when the device computed it
    started: float  # perf_counter() at start, in seconds
    timing: dict = field(default_factory=dict)  # device-side stages measured so far
    blocks: tuple[int, int] | None = None  # (start, stop): the device runs these next, on `block_input`
    block_input: np.ndarray | None = None  # block start's input: conv1's output, or the model's input
    branch_at: int | None = None  # the branch runs on the output of `blocks` (they end at its attach point)
    kind: str = "logits"  # how to read the model's output (KINDS)


def summarize(output: np.ndarray) -> dict:
    """One sample's output that is not per-class scores, in a few numbers: its shape, min,
    max, mean, and its TOP_VALUES largest values with their index (one per axis)."""
    values = np.asarray(output, np.float64)
    flat = values.reshape(-1)
    top = np.argsort(flat)[::-1][:TOP_VALUES]
    return {"shape": list(values.shape), "min": float(flat.min()), "max": float(flat.max()),
            "mean": float(flat.mean()),
            "top": [{"at": [int(i) for i in np.unravel_index(k, values.shape)], "value": float(flat[k])} for k in top]}


def read_output(output: np.ndarray, kind: str) -> tuple[int, float | None, dict | None]:
    """(label, confidence, summary) of the first sample of a batch of outputs: softmax over
    logits, probabilities as given; for kind "tensor", label -1 and a summary instead."""
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}: expected one of {', '.join(KINDS)}")
    row = np.asarray(output)[0]
    if kind == "tensor":
        return -1, None, summarize(row)
    scores = row.reshape(-1).astype(np.float64)
    probs = scores if kind == "probabilities" else softmax(scores)
    label = int(probs.argmax())
    return label, float(probs[label]), None


def _answer(output: np.ndarray, tier: str, timing: dict, fallback: str | None = None, exited: bool = False,
            kind: str = "logits", branch_logits: np.ndarray | None = None) -> Answer:
    label, confidence, summary = read_output(output, kind)
    branch_label = None if branch_logits is None or exited else int(np.asarray(branch_logits)[0].argmax())
    uncertain = ("low-confidence" if confidence is not None and confidence < LOW_CONFIDENCE
                 else "branch-disagrees" if branch_label is not None and branch_label != label else None)
    return Answer(label, confidence, tier, timing, fallback, exited, branch_label, uncertain, summary)


def model_input(model: BrowserModel | None, images: np.ndarray) -> np.ndarray:
    """Block 0's input for a batch of what the shipped samples hold: our model's pictures,
    prepared (padded, normalized; strata.preprocess); a split model's samples are that
    input already (BrowserModel.prepare; as is when model is None)."""
    return np.asarray(images, np.float32) if model is None else model.prepare(images)


def start(model: BrowserModel | None, image: np.ndarray, plan: Plan, request_id: int, blocks: int,
          conv1: bool = True, kind: str = "logits") -> Pending:
    """Run conv1 and the branch of the plan on one image (batch of 1).

    With a > 1 the result asks for the device's float blocks [1, a) next; the caller
    runs them and hands their output to after_blocks(). `conv1=False` (no branch) leaves
    conv1 to them too: they are [0, a), from the normalized input. A model made by
    `strata split` has no browser bundle (model is None): `image` is already its input
    tensor, and every block the device runs, from block 0, is one of those float blocks;
    `kind` says how to read its output (KINDS).
    A bundle that holds no conv1 (a branch `strata branch` distilled) attaches at K: with
    the branch, the device's blocks come in two calls, [0, K) and, if the branch does not
    answer, [K, a); after_blocks() runs the branch between them.
    """
    begin = time.perf_counter()
    timing: dict = {}
    if model is None or not model.holds_conv1:
        x = model_input(model, image[None])
        pending = Pending(None, None, None, x, None, begin, timing, kind=kind)
        if model is not None and plan.branch:
            pending.branch_at = model.attach
        stop = pending.branch_at or plan.a
        if stop > 0:
            pending.blocks, pending.block_input = (0, stop), x
            return pending
        return _onward(pending, x, plan, request_id, blocks)
    batch = image[None] if image.ndim == 2 else image
    if plan.a == 0 or not (conv1 or plan.branch):
        x = model_input(model, batch)
        pending = Pending(None, None, None, batch, None, begin, timing, kind=kind)
        if plan.a > 0:
            pending.blocks, pending.block_input = (0, plan.a), x
            return pending
        return _onward(pending, x, plan, request_id, blocks)
    features = x = model.conv1(batch)
    timing["conv1_ms"] = (time.perf_counter() - begin) * 1000
    pending = Pending(None, None, None, batch, features, begin, timing, kind=kind)
    if plan.branch and _branch(model, pending, features):
        return pending
    return _after_branch(pending, model, features, plan, request_id, blocks)


def _branch(model: BrowserModel, pending: Pending, features: np.ndarray) -> bool:
    """Run the branch on its input; True if it is confident, and then its answer is final."""
    begin = time.perf_counter()
    pending.branch_logits = logits = model.branch_logits(features)
    pending.timing["branch_ms"] = (time.perf_counter() - begin) * 1000
    if not bool(should_exit(logits, model.rule, model.threshold)[0]):
        return False
    pending.answer = _answer(logits, "browser", _device_timing(pending.timing, pending.started), exited=True)
    return True


def _after_branch(pending: Pending, model: BrowserModel, x: np.ndarray, plan: Plan, request_id: int,
                  blocks: int) -> Pending:
    """The branch's input `x` (block attach's) goes on: the device's blocks [attach, a) next, or the offload."""
    if plan.a > model.attach:
        pending.blocks, pending.block_input = (model.attach, plan.a), x
        return pending
    return _onward(pending, x, plan, request_id, blocks)


def after_blocks(pending: Pending, x: np.ndarray, plan: Plan, request_id: int, blocks: int,
                 model: BrowserModel | None = None) -> Pending:
    """The device's further blocks produced `x`: the branch next if it waits for them
    (`model` then runs it), else answer here (a = N) or ask the edge."""
    pending.timing["blocks_ms"] = (time.perf_counter() - pending.started) * 1000 - sum(
        pending.timing.get(k, 0.0) for k in ("conv1_ms", "branch_ms"))
    pending.blocks = pending.block_input = None
    if pending.branch_at is not None:
        pending.branch_at, pending.features = None, x
        if _branch(model, pending, x):
            return pending
        return _after_branch(pending, model, x, plan, request_id, blocks)
    return _onward(pending, x, plan, request_id, blocks)


def _onward(pending: Pending, x: np.ndarray, plan: Plan, request_id: int, blocks: int) -> Pending:
    if plan.a == blocks:  # the whole main path ran here
        pending.answer = _answer(x, "browser", _device_timing(pending.timing, pending.started), kind=pending.kind,
                                 branch_logits=pending.branch_logits)
    else:
        pending.request = InferRequest(request_id, plan, x, (time.perf_counter() - pending.started) * 1000)
    return pending


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
    return _answer(result.logits, result.tier, timing, result.fallback, kind=pending.kind,
                   branch_logits=pending.branch_logits)


def fall_back(pending: Pending, reason: str, logits: np.ndarray) -> Answer:
    """Answer on the device when the edge cannot: better a marked answer than none. The
    caller gives the logits: the branch's with a bundle, or without one (a split model)
    the rest of the main path's, run on the device."""
    total = (time.perf_counter() - pending.started) * 1000
    device_ms = pending.request.device_ms if pending.request else total
    return _answer(logits, "browser", {"device_compute_ms": device_ms, "total_ms": total}, reason, kind=pending.kind)
