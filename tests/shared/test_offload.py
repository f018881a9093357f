"""Offload messages and plans. Runs in CPython (pytest) and inside Pyodide."""

import numpy as np
import pytest

from strata import wire
from strata.offload import (InferRequest, RequestError, Result, infer_frame, read_infer, read_result,
                            result_frame, split_transfer)
from strata.plan import Plan, PlanError

CUTS = {"": [(1, 32, 32), (32, 16, 16), (64, 8, 8), (10,)], "p50": [(1, 32, 32), (32, 16, 16), (32, 8, 8), (10,)]}


def _through_wire(frame):
    return wire.decode(wire.encode(frame))


def test_infer_round_trip_with_each_codec():
    x = np.maximum(np.random.default_rng(0).normal(size=(2, 32, 16, 16)), 0).astype(np.float32)
    for codec in ["f32", "f16+z", "i8c"]:
        request = InferRequest(5, Plan(1, 3, codec), x, device_ms=2.5)
        back = read_infer(_through_wire(infer_frame(request)), CUTS)
        assert back.request_id == 5 and back.plan == request.plan and back.device_ms == 2.5
        assert back.tensor.shape == x.shape
        assert np.abs(back.tensor - x).max() <= (0 if codec == "f32" else 0.05 * x.max())


def test_infer_with_the_wrong_shape_names_the_expected_one():
    frame = infer_frame(InferRequest(1, Plan(2, 3, "f32"), np.zeros((1, 32, 16, 16), np.float32)))
    with pytest.raises(RequestError, match=r"block 2 must be shaped \(N, 64, 8, 8\)") as caught:
        read_infer(_through_wire(frame), CUTS)
    assert caught.value.code == "bad-tensor" and caught.value.request_id == 1


def test_each_variant_has_its_own_shapes_and_unknown_ones_are_refused():
    x = np.zeros((1, 32, 8, 8), np.float32)
    back = read_infer(_through_wire(infer_frame(InferRequest(4, Plan(2, 3, "f32", variant="p50"), x))), CUTS)
    assert back.plan.variant == "p50" and back.tensor.shape == x.shape
    with pytest.raises(RequestError, match=r"block 2 must be shaped \(N, 64, 8, 8\)"):
        read_infer(_through_wire(infer_frame(InferRequest(5, Plan(2, 3, "f32"), x))), CUTS)
    with pytest.raises(RequestError, match="no model variant 'p75'.*'', 'p50'") as caught:
        read_infer(_through_wire(infer_frame(InferRequest(6, Plan(2, 3, "f32", variant="p75"), x))), CUTS)
    assert caught.value.code == "unknown-variant" and caught.value.request_id == 6


def test_infer_with_a_bad_plan_or_tensor_is_refused():
    good = infer_frame(InferRequest(3, Plan(1, 3, "f32"), np.zeros((1, 32, 16, 16), np.float32)))
    bad_plan = wire.Frame(good.type, {**good.header, "plan": {"a": 3, "b": 1}}, good.payload)
    with pytest.raises(RequestError, match="0 <= a <= b") as caught:
        read_infer(bad_plan, CUTS)
    assert caught.value.code == "bad-plan"
    nan = np.full((1, 32, 16, 16), np.nan, np.float32)
    with pytest.raises(RequestError, match="NaN or Inf"):
        read_infer(wire.Frame(good.type, good.header, nan.tobytes()), CUTS)
    with pytest.raises(RequestError, match="integer 'id'"):
        read_infer(wire.Frame(good.type, {**good.header, "id": "x"}, good.payload), CUTS)


def test_result_round_trip_and_errors_raise():
    result = Result(9, np.arange(10, dtype=np.float32)[None], "cloud", {"edge_compute_ms": 1.0}, None)
    back = read_result(_through_wire(result_frame(result)))
    assert back.request_id == 9 and back.tier == "cloud" and back.timing == {"edge_compute_ms": 1.0}
    assert np.array_equal(back.logits, result.logits)
    with pytest.raises(RequestError, match="too big") as caught:
        read_result(_through_wire(wire.error("too-large", "too big", 9)))
    assert caught.value.request_id == 9


def test_plan_checks():
    assert Plan(1, 4).check(4) == Plan(1, 4)
    with pytest.raises(PlanError, match="branch needs conv1"):
        Plan(0, 2, branch=True).check(4)
    assert Plan(0, 2, branch=False).check(4).a == 0
    with pytest.raises(PlanError, match="unknown codec"):
        Plan(1, 2, codec="png").check(4)
    with pytest.raises(PlanError, match="integers a and b"):
        Plan.from_header({"a": "1", "b": 2}, 4)


def test_split_transfer_shares_latency_then_bytes():
    up, down = split_transfer(30.0, up_bytes=9000, down_bytes=1000, rtt_ms=10.0)
    assert abs(up + down - 30.0) < 1e-9
    assert abs(up - (5 + 20 * 0.9)) < 1e-9 and abs(down - (5 + 20 * 0.1)) < 1e-9
    assert split_transfer(8.0, 100, 100, None) == (4.0, 4.0)
    assert split_transfer(-1.0, 1, 1, 5.0) == (0.0, 0.0)


def test_a_tensor_arrives_in_the_dtype_of_its_cut():
    cuts, dtypes = {"": [(8, 8, 3), (4, 8, 8), (5,)]}, {"": ["uint8", "float16", "float32"]}
    pixels = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    back = read_infer(_through_wire(infer_frame(InferRequest(1, Plan(0, 1, "i8", branch=False), pixels))), cuts, dtypes)
    assert back.tensor.dtype == np.uint8 and np.array_equal(back.tensor, pixels)  # exact, even under i8
    half = np.random.default_rng(2).normal(size=(2, 4, 8, 8)).astype(np.float16)
    back = read_infer(_through_wire(infer_frame(InferRequest(2, Plan(1, 2, "f32"), half))), cuts, dtypes)
    assert back.tensor.dtype == np.float16 and np.array_equal(back.tensor, half)
    floats = pixels.astype(np.float32)
    with pytest.raises(RequestError, match="block 0 is uint8; got float32") as caught:
        read_infer(_through_wire(infer_frame(InferRequest(3, Plan(0, 1, "f32", branch=False), floats))), cuts, dtypes)
    assert caught.value.code == "bad-tensor"


def _infer_header(**fields):
    good = infer_frame(InferRequest(3, Plan(1, 3, "f32+z"), np.zeros((1, 32, 16, 16), np.float32)))
    return wire.Frame(good.type, {**good.header, **fields}, good.payload)


def test_every_header_field_is_checked_for_its_type():
    cases = [
        ({"id": True}, "malformed", "integer 'id'"),
        ({"plan": {"a": 1, "b": 3, "variant": ["p50"]}}, "bad-plan", "'variant' must be a string"),
        ({"plan": {"a": 1, "b": 3, "variant": {"x": 1}}}, "bad-plan", "'variant' must be a string"),
        ({"plan": {"a": True, "b": 3, "codec": "f32+z"}}, "bad-plan", "integers a and b"),
        ({"device_ms": True}, "bad-request", "device_ms"),
        ({"device_ms": -1}, "bad-request", "device_ms"),
        ({"tensor": {"codec": "f32+z", "shape": [10**30, 32, 16, 16]}}, "too-large", "at most"),
        ({"tensor": {"codec": "f32+z", "shape": [1] * 70}}, "bad-tensor", "shape"),
        ({"tensor": {"codec": "f32+z", "shape": [True, 32, 16, 16]}}, "bad-tensor", "shape"),
        ({"tensor": {"codec": ["f32"], "shape": [1, 32, 16, 16]}}, "bad-tensor", "unknown codec"),
        ({"tensor": [1]}, "bad-tensor", "'tensor' object"),
    ]
    for fields, code, message in cases:
        with pytest.raises(RequestError, match=message) as caught:
            read_infer(_infer_header(**fields), CUTS, max_samples=32)
        assert caught.value.code == code, fields
        assert caught.value.request_id == (None if code == "malformed" else 3), fields


def test_rank_shape_and_samples_are_checked_before_the_payload_is_inflated():
    import zlib
    bomb = zlib.compress(bytes(8192 * 32 * 16 * 16 * 4), 9)  # 256 MiB of zeros, some 250 KB compressed
    many = wire.Frame(wire.MessageType.INFER, {"id": 1, "plan": Plan(1, 3, "f32+z").to_header(),
                                               "tensor": {"codec": "f32+z", "shape": [8192, 32, 16, 16]}}, bomb)
    with pytest.raises(RequestError, match="at most 32 samples") as caught:
        read_infer(many, CUTS, max_samples=32)
    assert caught.value.code == "too-large"
    flat = wire.Frame(many.type, {**many.header, "tensor": {"codec": "f32+z", "shape": [1 << 26]}}, bomb)
    with pytest.raises(RequestError, match=r"must be shaped \(N, 32, 16, 16\)") as caught:
        read_infer(flat, CUTS, max_samples=32)
    assert caught.value.code == "bad-tensor"
    with pytest.raises(RequestError, match="at most 1000 values") as caught:
        read_infer(wire.Frame(many.type, {**many.header, "tensor": {"codec": "f32+z", "shape": [1, 32, 16, 16]}}, bomb),
                   CUTS, max_samples=32, max_elements=1000)
    assert caught.value.code == "too-large"


def test_a_result_that_cannot_be_encoded_is_an_error_with_its_id():
    with pytest.raises(RequestError, match="NaN or Inf") as caught:
        result_frame(Result(8, np.array([[np.inf, 0.0]], np.float32), "edge"))
    assert caught.value.code == "bad-result" and caught.value.request_id == 8
