"""The edge WebSocket, driven by a real `websockets` client against a running server."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect

from strata import wire
from strata.wire import MessageType


def _ws(edge_url: str) -> str:
    return edge_url.replace("http://", "ws://") + "/ws"


async def _hello(socket) -> None:
    """Every connection opens with the edge's HELLO."""
    assert wire.decode(await asyncio.wait_for(socket.recv(), timeout=5)).type is MessageType.HELLO


async def _exchange(socket, data) -> wire.Frame:
    await socket.send(data)
    return wire.decode(await asyncio.wait_for(socket.recv(), timeout=5))


def test_ping_gets_a_pong_with_the_asked_payload(edge_url: str) -> None:
    async def main() -> None:
        async with connect(_ws(edge_url), compression=None) as socket:
            await _hello(socket)
            reply = await _exchange(socket, wire.encode(wire.ping(4, 1.5, reply_bytes=1000, payload=bytes(500))))
            assert reply.type is MessageType.PONG
            assert reply.header["seq"] == 4 and reply.header["sent_ms"] == 1.5
            assert reply.header["received_bytes"] == 500
            assert len(reply.payload) == 1000
    asyncio.run(main())


def test_permessage_deflate_is_off_even_when_offered(edge_url: str) -> None:
    async def main() -> None:
        async with connect(_ws(edge_url), compression="deflate") as socket:
            assert "sec-websocket-extensions" not in socket.response.headers
    asyncio.run(main())


@pytest.mark.parametrize("bad, code", [
    (b"\x00\x01garbage", "malformed"),
    (wire.encode(wire.ping(1, 0.0))[:-4], "malformed"),
    ("a text message", "malformed"),
    (b"ST\x09\x05\x02\x00\x00\x00{}", "unsupported-version"),
    (b"ST\x01\x63\x02\x00\x00\x00{}", "unknown-type"),
    (wire.encode(wire.Frame(MessageType.PING, {"seq": "one", "sent_ms": 0})), "malformed"),
    (wire.encode(wire.ping(1, 0.0, reply_bytes=1 << 30)), "bad-request"),
    (wire.encode(wire.Frame(MessageType.RESULT, {})), "unsupported"),
])
def test_bad_messages_get_an_error_and_the_connection_lives_on(edge_url: str, bad, code: str) -> None:
    async def main() -> None:
        async with connect(_ws(edge_url), compression=None) as socket:
            await _hello(socket)
            reply = await _exchange(socket, bad)
            assert reply.type is MessageType.ERROR
            assert reply.header["code"] == code
            assert reply.header["message"]
            after = await _exchange(socket, wire.encode(wire.ping(2, 0.0)))
            assert after.type is MessageType.PONG
    asyncio.run(main())

