"""The messages of one offload: INFER from the worker, RESULT or ERROR from the edge.

The worker, the edge and the Python load generator all build and read them here, so
the three cannot drift apart. Times are milliseconds.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from strata import wire
from strata.codecs import EXACT_DTYPES, CodecError, decode_tensor, encode_tensor, payload_bound, tensor_shape
from strata.plan import Plan, PlanError
from strata.wire import Frame, MessageType

# An INFER frame's preamble and JSON header, besides i8 and i8c's scales: 187 to 219 bytes
# measured with a 2**53 id, a 4-d shape, a 16-character variant name and a branch plan.
INFER_HEADER_BYTES = 256
SCALE_JSON_BYTES = 25  # one scale in the header's JSON: a double's repr (at most 24 characters) and a comma


class RequestError(ValueError):
    """An INFER the edge refuses; `code` goes into the ERROR frame."""

    def __init__(self, code: str, message: str, request_id: int | None = None) -> None:
        super().__init__(message)
        self.code, self.request_id = code, request_id


@dataclass(frozen=True)
class InferRequest:
    request_id: int
    plan: Plan
    tensor: np.ndarray  # the input of block plan.a, batch first
    device_ms: float = 0.0


@dataclass(frozen=True)
class Result:
    request_id: int
    logits: np.ndarray
    tier: str  # where the last block ran: "browser", "edge" or "cloud"
    timing: dict = field(default_factory=dict)
    fallback: str | None = None  # why the plan was not followed to the letter, if it was not


def infer_frame(request: InferRequest) -> Frame:
    tensor, payload = encode_tensor(request.tensor, request.plan.codec)
    header = {"id": request.request_id, "plan": request.plan.to_header(), "tensor": tensor,
              "device_ms": request.device_ms}
    return Frame(MessageType.INFER, header, payload)


def infer_frame_bound(codec: str, shape: tuple[int, ...] | list[int], dtype: str = "float32") -> int:
    """The most bytes an INFER frame carrying one sample of `shape` (no batch) and `dtype`
    can take under `codec`: the payload's bound (strata.codecs.payload_bound), the header
    and, for i8 (one) and i8c (one per channel, shape[0]), the scales it lists."""
    base = codec.partition("+")[0]
    scales = 0 if dtype in EXACT_DTYPES else {"i8": 1, "i8c": shape[0] if shape else 1}.get(base, 0)
    return payload_bound(codec, shape, dtype) + INFER_HEADER_BYTES + scales * SCALE_JSON_BYTES


def read_infer(frame: Frame, cut_shapes: Mapping[str, list[tuple[int, ...]]],
               cut_dtypes: Mapping[str, list[str]] | None = None, max_samples: int | None = None,
               max_elements: int = 1 << 26) -> InferRequest:
    """Validate an INFER against the model: cut_shapes[variant][k] is block k's input,
    without batch, for each variant this side serves ("" is the unpruned model), and
    cut_dtypes[variant][k] its dtype (float32 if not given). A float tensor becomes the
    cut's float dtype (f32 and f16 carry float16 exactly); an integer cut takes only its
    own dtype, which codecs send exactly.

    Every header field is checked before the payload is touched: the declared shape
    must be block a's input with 1..max_samples samples and at most max_elements values,
    so a small compressed payload cannot inflate into more than that. RequestError
    codes: malformed, unknown-variant, bad-plan, bad-tensor, too-large, bad-request.
    """
    header = frame.header
    request_id = header.get("id")
    if type(request_id) is not int:
        raise RequestError("malformed", "INFER needs an integer 'id'")
    plan_header = header.get("plan")
    variant = plan_header.get("variant", "") if isinstance(plan_header, dict) else ""
    if not isinstance(variant, str):
        raise RequestError("bad-plan", f"plan 'variant' must be a string; got {reprlib.repr(variant)}", request_id)
    if variant not in cut_shapes:
        served = ", ".join(repr(name) for name in cut_shapes)
        raise RequestError("unknown-variant", f"this server has no model variant {reprlib.repr(variant)}; "
                                              f"it serves {served}", request_id)
    cut_shapes = cut_shapes[variant]
    try:
        plan = Plan.from_header(plan_header, len(cut_shapes) - 1)
    except PlanError as exc:
        raise RequestError("bad-plan", str(exc), request_id) from None
    if plan.a >= len(cut_shapes) - 1:
        raise RequestError("bad-plan", f"plan leaves nothing to run off the device (a={plan.a})", request_id)
    device_ms = header.get("device_ms", 0.0)
    if not wire.is_number(device_ms) or device_ms < 0:
        raise RequestError("bad-request", f"'device_ms' must be a number >= 0; got {reprlib.repr(device_ms)}",
                           request_id)
    spec = header.get("tensor")
    expected = tuple(cut_shapes[plan.a])
    try:
        if not isinstance(spec, dict):
            raise CodecError("INFER needs a 'tensor' object with codec and shape")
        shape = tensor_shape(spec)
        if len(shape) != len(expected) + 1 or shape[1:] != expected or shape[0] < 1:
            raise CodecError(f"the input of block {plan.a} must be shaped (N, {', '.join(map(str, expected))}) "
                             f"with N >= 1; got {shape}")
        if max_samples is not None and shape[0] > max_samples:
            raise RequestError("too-large", f"a frame holds at most {max_samples} samples; got {shape[0]}", request_id)
        if math.prod(shape) > max_elements:
            raise RequestError("too-large", f"a tensor holds at most {max_elements} values; got {math.prod(shape)}",
                               request_id)
        x = decode_tensor(spec, frame.payload, max_elements)
    except CodecError as exc:
        raise RequestError("bad-tensor", str(exc), request_id) from None
    dtypes = (cut_dtypes or {}).get(variant)
    dtype = np.dtype(dtypes[plan.a] if dtypes else "float32")
    if x.dtype != dtype and not dtype.kind == x.dtype.kind == "f":
        raise RequestError("bad-tensor", f"the input of block {plan.a} is {dtype.name}; got {x.dtype.name}", request_id)
    return InferRequest(request_id, plan, x.astype(dtype, copy=False), float(device_ms))


def result_frame(result: Result) -> Frame:
    """A RESULT; RequestError "bad-result" if the logits hold NaN or Inf, which no
    RESULT may carry (an input far outside the model's range can overflow it)."""
    try:
        header, payload = encode_tensor(result.logits, "f32")
    except CodecError as exc:
        raise RequestError("bad-result", f"the model's output cannot be sent: {exc}; the input's values are "
                                         "probably far outside what the model was trained on", result.request_id) from None
    return Frame(MessageType.RESULT, {"id": result.request_id, "tier": result.tier, "timing": result.timing,
                                      "fallback": result.fallback, "tensor": header}, payload)


def read_result(frame: Frame) -> Result:
    """Parse a RESULT; an ERROR frame raises RequestError with its code and message."""
    header = frame.header
    if frame.type is MessageType.ERROR:
        raise RequestError(str(header.get("code")), str(header.get("message")), header.get("id"))
    if frame.type is not MessageType.RESULT:
        raise RequestError("unexpected", f"expected RESULT, got {frame.type.name}")
    return Result(header["id"], decode_tensor(header["tensor"], frame.payload), header["tier"],
                  header.get("timing", {}), header.get("fallback"))


def error_frame(exc: RequestError) -> Frame:
    return wire.error(exc.code, str(exc), exc.request_id)


def split_transfer(total_ms: float, up_bytes: int, down_bytes: int, rtt_ms: float | None) -> tuple[float, float]:
    """Split a measured network time into (uplink, downlink).

    One side cannot time a single direction without synchronized clocks, so each way
    gets half the round-trip latency, and the rest is shared in proportion to bytes.
    With no RTT estimate, the whole time counts as latency and splits evenly.
    """
    total_ms = max(total_ms, 0.0)
    latency = total_ms if rtt_ms is None else min(rtt_ms, total_ms)
    rest = total_ms - latency
    moved = up_bytes + down_bytes
    share = up_bytes / moved if moved else 0.5
    return latency / 2 + rest * share, latency / 2 + rest * (1 - share)
