"""The edge's WebSocket under hostile and careless input, against a real `strata serve`.

Every frame gets an answer (a RESULT, a PONG, or an ERROR carrying its id or seq) within
a deadline, whatever its header holds, and other clients keep being served; a small
frame cannot make the edge inflate, compute or hold much; a page on a foreign host name
cannot use the edge even when its DNS points here.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strata import wire
from strata.offload import InferRequest, infer_frame
from strata.plan import Plan
from strata.wire import MessageType
from websockets.sync.client import connect

from edge_server.blocks.main_path import MainPath
from edge_server.config import Settings
from edge_server.edge.limits import ConnectionLimits
from edge_server.edge.session import EdgeSession
from testing.servers import rss_mb

N = len(MainPath(Settings().models_dir))
DEADLINE_S = 5.0  # every frame's answer comes within this
GOOD_INFER = {"id": 1, "plan": {"a": 1, "b": N - 2, "codec": "f32", "branch": True, "variant": ""},
              "tensor": {"codec": "f32", "shape": [1, 32, 16, 16]}, "device_ms": 1.0}
GOOD_PAYLOAD = np.zeros((1, 32, 16, 16), np.float32).tobytes()


def _ws(edge_url: str, query: str = "") -> str:
    return edge_url.replace("http://", "ws://") + "/ws" + query


def _frame(kind: int, header: bytes, payload: bytes = b"") -> bytes:
    return wire.PREAMBLE.pack(wire.MAGIC, wire.WIRE_VERSION, kind, len(header)) + header + payload


def _infer(payload: bytes = GOOD_PAYLOAD, **fields: object) -> bytes:
    return _frame(MessageType.INFER, json.dumps({**GOOD_INFER, **fields}).encode(), payload)


def _exchange(socket, data: bytes) -> wire.Frame:
    socket.send(data)
    return wire.decode(socket.recv(timeout=DEADLINE_S))


@contextmanager
def _session(edge_url: str, query: str = "") -> Iterator:
    with connect(_ws(edge_url, query), compression=None, max_size=None) as socket:
        hello = wire.decode(socket.recv(timeout=DEADLINE_S))
        assert hello.type is MessageType.HELLO
        socket.hello = hello.header
        yield socket


@contextmanager
def _other_client(edge_url: str) -> Iterator[list[float]]:
    """Another client pinging every 20 ms meanwhile; yields its round trips (ms) so far.
    A ping that gets no answer in DEADLINE_S fails the test when the block ends."""
    round_trips: list[float] = []
    stop, failure = threading.Event(), []

    def ping() -> None:
        try:
            with _session(edge_url) as socket:
                seq = 0
                while not stop.is_set():
                    begin = time.perf_counter()
                    assert _exchange(socket, wire.encode(wire.ping(seq, 0.0))).type is MessageType.PONG
                    round_trips.append((time.perf_counter() - begin) * 1000)
                    seq += 1
                    stop.wait(0.02)
        except Exception as exc:  # noqa: BLE001 - reported below, in the test's thread
            failure.append(exc)

    thread = threading.Thread(target=ping)
    thread.start()
    try:
        yield round_trips
    finally:
        stop.set()
        thread.join()
    assert not failure, f"the other client was not served: {failure[0]!r}"
    assert round_trips, "the other client got no answer at all"


# -- one test per kind ------------------------------------------------------------------

@pytest.mark.parametrize("frame, code", [
    pytest.param(_infer(plan={**GOOD_INFER["plan"], "variant": ["p50"]}), "bad-plan", id="variant-list"),
    pytest.param(_infer(plan={**GOOD_INFER["plan"], "variant": {"p": 50}}), "bad-plan", id="variant-object"),
    pytest.param(_infer(tensor={"codec": "f32", "shape": [10**30, 32, 16, 16]}), "too-large", id="dim-10**30"),
    pytest.param(_infer(tensor={"codec": "f32", "shape": [1] * 70}, payload=bytes(4)), "bad-tensor", id="70-dims"),
    pytest.param(_infer(tensor={"codec": "f32", "shape": [1] * 9}, payload=bytes(4)), "bad-tensor", id="9-dims"),
    pytest.param(_infer(tensor={"codec": "f32", "shape": [True, 32, 16, 16]}), "bad-tensor", id="bool-dim"),
    pytest.param(_infer(plan={**GOOD_INFER["plan"], "a": True}), "bad-plan", id="bool-a"),
    pytest.param(_infer(device_ms=False), "bad-request", id="bool-device-ms"),
    pytest.param(_infer(tensor={"codec": "i8", "shape": [1, 32, 16, 16], "scale": [True]},
                        payload=bytes(8192)), "bad-tensor", id="bool-scale"),
])
def test_a_header_of_the_wrong_type_gets_an_error_with_its_id(edge_url: str, frame: bytes, code: str) -> None:
    with _session(edge_url) as socket:
        reply = _exchange(socket, frame)
        assert reply.type is MessageType.ERROR and reply.header["code"] == code, reply.header
        assert reply.header["id"] == 1 and reply.header["message"]
        assert _exchange(socket, _infer(id=2)).header["id"] == 2  # and the connection lives on


@pytest.mark.parametrize("frame, seq", [
    pytest.param(_frame(MessageType.PING, b'{"seq": true, "sent_ms": 0, "reply_bytes": 0}'), None, id="bool-seq"),
    pytest.param(_frame(MessageType.PING, b'{"seq": 3, "sent_ms": 0, "reply_bytes": true}'), 3, id="bool-reply-bytes"),
    pytest.param(_frame(MessageType.PING, b'{"seq": 3, "sent_ms": NaN, "reply_bytes": 0}'), None, id="nan"),
    pytest.param(_frame(MessageType.PING, b'{"seq": 3, "sent_ms": 1e999, "reply_bytes": 0}'), None, id="overflow"),
    pytest.param(_frame(MessageType.INFER, json.dumps(GOOD_INFER).replace('"device_ms": 1.0', '"device_ms": Infinity')
                        .encode(), GOOD_PAYLOAD), None, id="infinity"),
    pytest.param(_frame(MessageType.INFER, b'{"id": 1, "x": ' + b"[" * 30000 + b"]" * 30000 + b"}"), None,
                 id="nested-30000"),
])
def test_headers_are_strict_values_and_nothing_odd_is_echoed(edge_url: str, frame: bytes, seq: int | None) -> None:
    with _session(edge_url) as socket:
        reply = _exchange(socket, frame)
        assert reply.type is MessageType.ERROR and reply.header["code"] == "malformed", reply.header
        assert reply.header.get("seq") == seq


def test_a_result_that_cannot_be_encoded_gets_an_error_with_its_id(edge_url: str) -> None:
    """3e38 is a finite float32, but it overflows the model: the logits hold NaN or Inf,
    at the edge alone and after the cloud alike (which then counts as a failed forward)."""
    x = np.full((1, 32, 16, 16), 3e38, np.float32)
    with _session(edge_url) as socket:
        for request_id, b in [(5, N), (6, N - 2)]:
            reply = _exchange(socket, wire.encode(infer_frame(InferRequest(request_id, Plan(1, b, "f32"), x))))
            assert reply.type is MessageType.ERROR and reply.header["code"] == "bad-result", reply.header
            assert reply.header["id"] == request_id


def test_a_private_session_is_refused_raw_input_uploads(edge_url: str) -> None:
    raw = {"plan": {"a": 0, "b": N, "codec": "f32", "branch": False}, "tensor": {"codec": "f32", "shape": [1, 1, 32, 32]}}
    image = bytes(4 * 32 * 32)
    with _session(edge_url, "?private=1") as socket:
        assert socket.hello["private"] is True
        reply = _exchange(socket, _infer(image, id=7, **raw))
        assert reply.type is MessageType.ERROR and reply.header["code"] == "private-session"
        assert reply.header["id"] == 7 and "a = 0" in reply.header["message"]
        assert _exchange(socket, _infer(id=8)).type is MessageType.RESULT  # cut 1 is fine
    with _session(edge_url) as socket:
        assert socket.hello["private"] is False
        assert _exchange(socket, _infer(image, id=9, **raw)).type is MessageType.RESULT
    with pytest.raises(Exception, match="403"):
        with _session(edge_url, "?private=yes"):
            pass


def _bomb(shape: list[int], request_id: int, zeros: bytes) -> bytes:
    """An f32+z INFER declaring `shape`, with a payload of compressed zeros."""
    header = {**GOOD_INFER, "id": request_id, "plan": {**GOOD_INFER["plan"], "codec": "f32+z"},
              "tensor": {"codec": "f32+z", "shape": shape}}
    return _frame(MessageType.INFER, json.dumps(header).encode(), zeros)


def test_a_zlib_bomb_is_refused_before_it_inflates(edge_server: tuple[str, subprocess.Popen]) -> None:
    """Before: 8,192 declared samples inflated to 2 GB, computed for 10 s and left 2.3 GB
    resident; a wrong-rank bomb stalled every other client for 1.5 s."""
    edge_url, process = edge_server
    zeros = zlib.compress(bytes(4 << 26), 9)  # 2**26 float32 zeros (256 MiB) in some 250 KB
    before = rss_mb(process)
    with _other_client(edge_url) as round_trips, _session(edge_url) as socket:
        for request_id, shape, code in [(11, [8192, 32, 16, 16], "too-large"), (12, [1 << 26], "bad-tensor"),
                                        (13, [1, 1 << 26], "bad-tensor")]:
            frame = _bomb(shape, request_id, zeros)
            begin = time.perf_counter()
            reply = _exchange(socket, frame)
            assert reply.type is MessageType.ERROR and reply.header["code"] == code, reply.header
            assert reply.header["id"] == request_id
            assert time.perf_counter() - begin < 1.0
    assert rss_mb(process, peak=True) - before < 300  # the peak: a bomb inflated and freed shows too
    assert max(round_trips) < 500, f"other client's slowest ping took {max(round_trips):.0f} ms"


def _handshake(edge_url: str, host: str, origin: str | None) -> str:
    """A raw WebSocket handshake naming this Host (and Origin); the status line back."""
    port = int(edge_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as raw:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
        raw.sendall((request + (f"Origin: {origin}\r\n" if origin else "") + "\r\n").encode())
        return raw.recv(200).split(b"\r\n")[0].decode()


def test_a_foreign_host_is_refused_even_with_a_matching_origin(edge_url: str) -> None:
    """DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 sends
    Host and Origin both evil.example. Before, the handshake was accepted (101)."""
    import httpx

    port = edge_url.rsplit(":", 1)[1]
    assert " 400 " in _handshake(edge_url, f"evil.example:{port}", f"http://evil.example:{port}")
    assert " 400 " in _handshake(edge_url, f"evil.example:{port}", None)
    assert httpx.get(edge_url + "/", headers={"Host": "evil.example"}).status_code == 400
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        assert " 101 " in _handshake(edge_url, host, f"http://{host}")


class _StubRuntime:
    """Just enough of EdgeRuntime for a session alone: for the paths no client can reach."""

    cut_shapes = {"": [(32, 16, 16)] * N + [(10,)]}
    cut_dtypes = {"": ["float32"] * (N + 1)}
    queued, cloud_up = 0, True
    variants = type("Variants", (), {"refused": {}})

    async def infer(self, request: object) -> None:
        raise KeyError("a bug")


def test_an_unforeseen_failure_is_answered_internal_with_its_id_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """The last resort, for bugs: the session answers, logs the traceback and goes on."""
    session = EdgeSession(Settings(), _StubRuntime(), ConnectionLimits(1, 1 << 20, 1 << 20))
    reply = wire.decode(asyncio.run(session.handle(_infer(id=21))))
    assert reply.type is MessageType.ERROR and reply.header["code"] == "internal" and reply.header["id"] == 21
    assert "KeyError: 'a bug'" in caplog.text and "Traceback" in caplog.text


def test_a_probe_past_the_reply_budget_is_busy_with_its_seq() -> None:
    limits = ConnectionLimits(1, max_queued_bytes=1000, per_connection_bytes=1000)
    session = EdgeSession(Settings(), _StubRuntime(), limits)
    first = asyncio.run(session.handle(wire.encode(wire.ping(1, 0.0, reply_bytes=900))))  # not sent yet
    assert wire.decode(first).type is MessageType.PONG and limits.queued_bytes == len(first)
    busy = wire.decode(asyncio.run(session.handle(wire.encode(wire.ping(2, 0.0, reply_bytes=200)))))
    assert busy.type is MessageType.ERROR and busy.header["code"] == "busy" and busy.header["seq"] == 2
    session.sent(first)
    assert wire.decode(asyncio.run(session.handle(wire.encode(wire.ping(3, 0.0, reply_bytes=200))))).type \
        is MessageType.PONG


# -- the fuzz test ------------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=8)
_SHAPES = st.lists(st.integers(-1, 2**40) | st.sampled_from([32, 16, 1, 0, 10**30]) | st.booleans(), max_size=10)
_INFER_FIELDS = ["id", "plan", "tensor", "device_ms", "plan.a", "plan.b", "plan.codec", "plan.branch", "plan.variant",
                 "tensor.codec", "tensor.shape", "tensor.scale"]
_PAYLOADS = st.sampled_from([GOOD_PAYLOAD, b"", zlib.compress(GOOD_PAYLOAD), zlib.compress(bytes(4 << 20))]) \
    | st.binary(max_size=64)


def _replace(header: dict, path: str, value: object) -> dict:
    """A copy of header with the field at a dotted path set to value (unchanged if a
    parent on the path is no longer an object)."""
    header = json.loads(json.dumps(header))
    *parents, leaf = path.split(".")
    target = header
    for key in parents:
        target = target.get(key)
        if not isinstance(target, dict):
            return header
    target[leaf] = value
    return header


@st.composite
def _frames(draw: st.DrawFn) -> tuple[bytes, MessageType | None, dict | None]:
    """(frame bytes, its type if it is well-formed, its header if it is well-formed)."""
    kind = draw(st.sampled_from(["infer", "ping", "raw"]))
    if kind == "raw":
        data = draw(st.binary(max_size=80) | st.builds(
            lambda t, body: struct.pack("<2sBBI", b"ST", 1, t, len(body)) + body, st.integers(0, 255),
            st.binary(max_size=64)))
        return data, None, None
    if kind == "infer":
        header = dict(GOOD_INFER, id=draw(st.integers(0, 2**31)))
        for path in draw(st.lists(st.sampled_from(_INFER_FIELDS), max_size=3, unique=True)):
            header = _replace(header, path, draw(_SHAPES) if path == "tensor.shape" else draw(_JSON))
        payload, message_type = draw(_PAYLOADS), MessageType.INFER
    else:
        header = {"seq": draw(st.integers(0, 2**31)), "sent_ms": 1.5, "reply_bytes": 0}
        for path in draw(st.lists(st.sampled_from(["seq", "sent_ms", "reply_bytes"]), max_size=2, unique=True)):
            header[path] = draw(_JSON | st.integers(-1, 2**40))
        payload, message_type = draw(st.binary(max_size=64)), MessageType.PING
    return _frame(message_type, json.dumps(header).encode(), payload), message_type, header


def test_fuzzed_frames_each_get_an_answer_in_time_and_others_are_still_served(edge_url: str) -> None:
    """A bounded, seeded (derandomized) run over header fields and bytes: a few seconds."""
    with _other_client(edge_url) as round_trips, _session(edge_url) as socket:

        @settings(max_examples=300, derandomize=True, database=None, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(_frames())
        def exchange(case: tuple[bytes, MessageType | None, dict | None]) -> None:
            data, message_type, header = case
            reply = _exchange(socket, data)  # TimeoutError if no answer within DEADLINE_S
            assert reply.type in (MessageType.RESULT, MessageType.PONG, MessageType.ERROR)
            if reply.type is MessageType.ERROR:
                assert reply.header["code"] != "internal", reply.header
            if message_type is MessageType.INFER and type(header.get("id")) is int:
                assert reply.header.get("id") == header["id"], (header, reply.header)
            if message_type is MessageType.PING and type(header.get("seq")) is int:
                assert reply.header.get("seq") == header["seq"], (header, reply.header)

        exchange()
    assert max(round_trips) < 1000, f"other client's slowest ping took {max(round_trips):.0f} ms"
