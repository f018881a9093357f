"""The edge and the cloud as real processes on loopback, driven like a worker would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import numpy as np
import pytest
from strata import wire
from strata.codecs import encode_tensor
from strata.offload import InferRequest, RequestError, infer_frame, read_result
from strata.plan import Plan
from strata.wire import Frame, MessageType
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bench.load import conv1_outputs, run_load
from edge_server.blocks.main_path import MainPath
from edge_server.config import Settings
from testing.servers import cloud_process, edge_process

MODELS = Settings().models_dir
MAIN_PATH = MainPath(MODELS)
N = len(MAIN_PATH)
FEATURES = conv1_outputs(MODELS, 64)


@pytest.fixture(scope="module")
def tiers() -> Iterator[str]:
    """A cloud process and an edge process that forwards to it; yields the edge's ws URL."""
    with cloud_process() as (cloud, _), edge_process("--cloud-url", cloud) as (edge, _):
        yield edge.replace("http://", "ws://") + "/ws"


async def _session(url: str, frames: list, **kwargs) -> tuple[dict, list[Frame]]:
    async with connect(url, compression=None, max_size=None, **kwargs) as socket:
        hello = wire.decode(await socket.recv())
        assert hello.type is MessageType.HELLO
        replies = []
        for frame in frames:
            await socket.send(frame if isinstance(frame, (bytes, str)) else wire.encode(frame))
            replies.append(wire.decode(await asyncio.wait_for(socket.recv(), 20)))
        return hello.header, replies


def _infer(plan: Plan, x: np.ndarray, request_id: int = 1) -> Frame:
    return infer_frame(InferRequest(request_id, plan, x, device_ms=1.0))


def _expected(x: np.ndarray, start: int) -> np.ndarray:
    return MAIN_PATH.run(x, start, N)


def test_hello_describes_the_model_and_its_costs(tiers: str) -> None:
    hello, _ = asyncio.run(_session(tiers, []))
    assert hello["model"] == MAIN_PATH.name and hello["blocks"] == N
    assert [tuple(s) for s in hello["cut_shapes"]] == MAIN_PATH.cut_shapes
    assert len(hello["edge_block_ms"]) == N and all(ms > 0 for ms in hello["edge_block_ms"])
    assert hello["cloud"] is True


@pytest.mark.parametrize("b, tier", [(N - 2, "cloud"), (N, "edge"), (1, "cloud")])
def test_offload_runs_the_plan_and_matches_onnxruntime(tiers: str, b: int, tier: str) -> None:
    x = FEATURES[:2]
    _, [reply] = asyncio.run(_session(tiers, [_infer(Plan(1, b, "f32"), x, 7)]))
    result = read_result(reply)
    assert result.request_id == 7 and result.tier == tier and result.fallback is None
    assert np.abs(result.logits - _expected(x, 1)).max() <= 1e-4
    timing = result.timing
    assert timing["device_compute_ms"] == 1.0
    assert timing["edge_total_ms"] >= timing["edge_overhead_ms"] >= 0
    if tier == "cloud":
        assert timing["cloud_compute_ms"] > 0 and timing["edge_to_cloud_ms"] >= 0


def test_raw_input_upload_runs_every_block_off_the_device(tiers: str) -> None:
    with np.load(MODELS / "samples.npz") as shipped:
        images = shipped["images"][:3]
    manifest = json.loads((MODELS / "manifest.json").read_text())
    from strata.preprocess import prepare

    x = prepare(images, manifest["input"]["mean"], manifest["input"]["std"])
    _, [reply] = asyncio.run(_session(tiers, [_infer(Plan(0, 2, "f16", branch=False), x)]))
    result = read_result(reply)
    assert result.tier == "cloud"
    assert (result.logits.argmax(1) == _expected(x, 0).argmax(1)).all()


def test_requests_pipelined_on_one_connection_all_come_back(tiers: str) -> None:
    async def main() -> set[int]:
        async with connect(tiers, compression=None) as socket:
            await socket.recv()
            for i in range(10):
                await socket.send(wire.encode(_infer(Plan(1, N - 1, "f16"), FEATURES[i:i + 1], 100 + i)))
            return {read_result(wire.decode(await socket.recv())).request_id for _ in range(10)}

    assert asyncio.run(main()) == set(range(100, 110))


def _bad_inputs() -> list:
    good = wire.encode(_infer(Plan(1, N, "f32"), FEATURES[:1]))
    shape_header, shape_payload = encode_tensor(np.zeros((1, 3, 5, 5), np.float32), "f32")
    nan = np.full_like(FEATURES[:1], np.nan)
    nan_frame = Frame(MessageType.INFER, {"id": 3, "plan": Plan(1, N, "f32").to_header(),
                                          "tensor": {"codec": "f32", "shape": list(nan.shape)}}, nan.tobytes())
    return [
        pytest.param(good[:20], "malformed", id="truncated"),
        pytest.param(b"\x00" * 40, "malformed", id="garbage"),
        pytest.param("text", "malformed", id="text"),
        pytest.param(good[:2] + b"\x07" + good[3:], "unsupported-version", id="version"),
        pytest.param(good[:3] + b"\x40" + good[4:], "unknown-type", id="type"),
        pytest.param(Frame(MessageType.INFER, {"id": 2, "plan": Plan(1, N, "f32").to_header(), "tensor": shape_header},
                           shape_payload), "bad-tensor", id="shape"),
        pytest.param(Frame(MessageType.INFER, {"id": 2, "plan": Plan(1, N, "f32").to_header(),
                                               "tensor": {"codec": "f32", "shape": [1, 2]}}, b"\x00" * 3),
                     "bad-tensor", id="dtype-size"),
        pytest.param(nan_frame, "bad-tensor", id="nan"),
        pytest.param(Frame(MessageType.INFER, {"id": 4, "plan": {"a": 5, "b": 1}, "tensor": {}}), "bad-plan", id="plan"),
        pytest.param(wire.encode(wire.ping(1, 0, payload=bytes(Settings().max_frame_bytes + 1))), "too-large",
                     id="too-large"),
    ]


@pytest.mark.parametrize("bad, code", _bad_inputs())
def test_bad_input_gets_an_error_and_the_connection_still_works(tiers: str, bad, code: str) -> None:
    _, [error, after] = asyncio.run(_session(tiers, [bad, _infer(Plan(1, N, "f16"), FEATURES[:1], 9)]))
    assert error.type is MessageType.ERROR and error.header["code"] == code, error.header
    assert error.header["message"]
    assert read_result(after).request_id == 9


def test_frames_far_over_the_limit_close_the_connection_and_the_server_lives_on(tiers: str) -> None:
    with pytest.raises(ConnectionClosed):
        asyncio.run(_session(tiers, [b"ST" + bytes(3 * Settings().max_frame_bytes)]))
    _, [after] = asyncio.run(_session(tiers, [_infer(Plan(1, N, "f16"), FEATURES[:1], 9)]))
    assert read_result(after).request_id == 9


def test_foreign_origins_are_refused(tiers: str) -> None:
    with pytest.raises((InvalidStatus, ConnectionClosed)):
        asyncio.run(_session(tiers, [], origin="http://evil.example"))
    own = "http://" + tiers.split("/")[2]
    hello, _ = asyncio.run(_session(tiers, [], origin=own))
    assert hello["blocks"] == N


def test_64_concurrent_clients_get_every_answer(tiers: str) -> None:
    result = asyncio.run(run_load(tiers, FEATURES, Plan(1, N - 1, "f16"), clients=64, requests=3, batching=True))
    assert result.errors == 0 and len(result.latencies_ms) == 64 * 3


def test_when_the_cloud_dies_the_edge_finishes_and_says_so() -> None:
    with cloud_process() as (cloud, process), edge_process("--cloud-url", cloud) as (edge, _):
        url = edge.replace("http://", "ws://") + "/ws"
        _, [before] = asyncio.run(_session(url, [_infer(Plan(1, 2, "f32"), FEATURES[:1])]))
        assert read_result(before).tier == "cloud"
        process.kill()
        process.wait()
        _, [after] = asyncio.run(_session(url, [_infer(Plan(1, 2, "f32"), FEATURES[:1])]))
        result = read_result(after)
        assert result.tier == "edge" and result.fallback.startswith("cloud-unavailable")
        assert np.abs(result.logits - _expected(FEATURES[:1], 1)).max() <= 1e-4


def test_error_frames_raise_with_their_request_id(tiers: str) -> None:
    _, [reply] = asyncio.run(_session(tiers, [Frame(MessageType.INFER, {"id": 5, "plan": {"a": 9, "b": 9}})]))
    with pytest.raises(RequestError) as caught:
        read_result(reply)
    assert caught.value.request_id == 5 and caught.value.code == "bad-plan"
