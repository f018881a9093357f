"""The edge's global limits, on a real `strata serve` started with tight ones: a cap on
WebSocket connections, a read timeout for slow headers and stalled frames, and a budget
for replies that clients never read."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from strata import wire
from strata.wire import MessageType
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import connect

from edge_server.edge.limits import ConnectionLimits
from testing.servers import edge_process, rss_mb

MAX_CONNECTIONS = 12
READ_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def tight_edge() -> Iterator[tuple[str, subprocess.Popen]]:
    with edge_process("--no-cloud", "--max-connections", str(MAX_CONNECTIONS), "--read-timeout", str(READ_TIMEOUT_S),
                      "--allowed-host", "phone.lan") as running:
        yield running


def _ws(edge_url: str) -> str:
    return edge_url.replace("http://", "ws://") + "/ws"


def _port(edge_url: str) -> int:
    return int(edge_url.rsplit(":", 1)[1])


def _closed_within(raw: socket.socket, seconds: float) -> bool:
    """Whether the server closes this connection within `seconds` (reading what it sends)."""
    raw.settimeout(seconds)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if raw.recv(65536) == b"":
                return True
    except (TimeoutError, ConnectionResetError) as exc:
        return isinstance(exc, ConnectionResetError)
    return False


def _upgrade(edge_url: str) -> socket.socket:
    """A raw socket whose WebSocket handshake is done (the HELLO left unread)."""
    raw = socket.create_connection(("127.0.0.1", _port(edge_url)))
    raw.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert raw.recv(12) == b"HTTP/1.1 101"
    return raw


def _masked(data: bytes) -> bytes:
    """One client-to-server binary WebSocket frame (mask of zeros, so data goes as is)."""
    length = len(data)
    size = bytes([0x80 | length]) if length < 126 else (bytes([0x80 | 126]) + length.to_bytes(2, "big")
                                                          if length < 65536 else bytes([0x80 | 127]) + length.to_bytes(8, "big"))
    return b"\x82" + size + bytes(4) + data


def test_names_given_with_allowed_host_are_served(tight_edge: tuple[str, subprocess.Popen]) -> None:
    edge_url, _ = tight_edge
    assert httpx.get(edge_url + "/", headers={"Host": f"phone.lan:{_port(edge_url)}"}).status_code == 200
    assert httpx.get(edge_url + "/", headers={"Host": f"other.lan:{_port(edge_url)}"}).status_code == 400


def test_connections_past_the_cap_are_told_to_try_again_later(tight_edge: tuple[str, subprocess.Popen]) -> None:
    """Before, 300 of 300 connections were accepted and held."""
    edge_url, _ = tight_edge
    with ExitStack() as stack:
        held = [stack.enter_context(connect(_ws(edge_url), compression=None)) for _ in range(MAX_CONNECTIONS)]
        for socket_ in held:
            assert wire.decode(socket_.recv(timeout=5)).type is MessageType.HELLO
        with connect(_ws(edge_url), compression=None) as extra:
            with pytest.raises(ConnectionClosedError) as closed:
                extra.recv(timeout=5)
        assert closed.value.rcvd.code == 1013 and f"at most {MAX_CONNECTIONS}" in closed.value.rcvd.reason
        held.pop().close()
        time.sleep(0.2)
        with connect(_ws(edge_url), compression=None) as again:  # a slot is free again
            assert wire.decode(again.recv(timeout=5)).type is MessageType.HELLO


def test_slow_headers_are_cut_off_after_the_read_timeout(tight_edge: tuple[str, subprocess.Popen]) -> None:
    """Before, 200 connections that sent half their headers stayed open indefinitely."""
    edge_url, _ = tight_edge
    slow = [socket.create_connection(("127.0.0.1", _port(edge_url))) for _ in range(20)]
    for raw in slow:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
    silent = socket.create_connection(("127.0.0.1", _port(edge_url)))  # sends nothing at all
    try:
        assert all(_closed_within(raw, READ_TIMEOUT_S + 2) for raw in [*slow, silent])
        with socket.create_connection(("127.0.0.1", _port(edge_url))) as prompt:
            prompt.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert prompt.recv(12) == b"HTTP/1.1 200"
    finally:
        for raw in [*slow, silent]:
            raw.close()


def test_a_frame_stalled_half_way_is_cut_off(tight_edge: tuple[str, subprocess.Popen]) -> None:
    """It cannot answer the keepalive ping: closed within two read timeouts (before: 40 s)."""
    edge_url, _ = tight_edge
    with _upgrade(edge_url) as raw:
        frame = _masked(wire.encode(wire.ping(1, 0.0, payload=bytes(1000))))
        raw.sendall(frame[:20])  # the rest never comes
        began = time.monotonic()
        assert _closed_within(raw, 2 * READ_TIMEOUT_S + 3)
        assert time.monotonic() - began < 2 * READ_TIMEOUT_S + 3


def _still_open(server_port: int, clients: list[socket.socket]) -> int:
    """How many of these clients' connections the server still has ESTABLISHED, from the
    kernel's table (/proc/net/tcp): a closed one may still have data in flight to a
    client that does not read, but the server is done with it."""
    ports = {raw.getsockname()[1] for raw in clients}
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, state = line.split()[1:4]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) in ports and state == "01":
            count += 1
    return count


def test_clients_that_never_read_cannot_pin_much_memory(tight_edge: tuple[str, subprocess.Popen]) -> None:
    """Each of these asks for 4 MiB downlink probes, 16 at a time, and never reads. Before,
    10 of them pinned 576 MB; now replies past the budget are refused (ERROR busy, which a
    reading client sees) and the keepalive closes the non-readers."""
    edge_url, process = tight_edge
    before = rss_mb(process)
    ping = _masked(wire.encode(wire.ping(1, 0.0, reply_bytes=4 * 1024 * 1024)))
    hogs = [_upgrade(edge_url) for _ in range(10)]
    peak = before
    try:
        for raw in hogs:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            raw.settimeout(2)
            raw.sendall(ping * 16)
        for _ in range(8):
            time.sleep(0.25)
            peak = max(peak, rss_mb(process))
        assert peak - before < 100, f"RSS grew by {peak - before:.0f} MB"
        deadline = time.monotonic() + 2 * READ_TIMEOUT_S + 3
        while _still_open(_port(edge_url), hogs) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _still_open(_port(edge_url), hogs) == 0
    finally:
        for raw in hogs:
            raw.close()
    with connect(_ws(edge_url), compression=None, max_size=None) as reader:  # the edge serves on
        reader.recv(timeout=5)
        reader.send(wire.encode(wire.ping(2, 0.0, reply_bytes=4 * 1024 * 1024)))
        pong = wire.decode(reader.recv(timeout=5))
        assert pong.type is MessageType.PONG and len(pong.payload) == 4 * 1024 * 1024


def test_the_reply_budget_refuses_only_what_does_not_fit() -> None:
    limits = ConnectionLimits(max_connections=2, max_queued_bytes=10, per_connection_bytes=6)
    assert limits.admit() and limits.admit() and not limits.admit()
    limits.leave()
    assert limits.admit()
    assert limits.room_for(8, held=0)  # a connection with nothing queued gets one reply through
    assert not limits.room_for(2, held=5)  # but not past its own share once it has some queued
    limits.hold(8)
    assert not limits.room_for(3, held=0) and limits.room_for(2, held=0)  # nor past the budget of all
    limits.release(8)
    assert limits.queued_bytes == 0 and limits.room_for(10, held=0)
