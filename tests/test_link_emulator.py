"""The link emulator, measured: real TCP servers on 127.0.0.1 behind it, timed on the loop's clock.

Rates are bits after the first arrival over the time from the first to the last arrival,
so the one-way delay and the initial burst drop out; delays are medians of several small
messages on an open connection. Both must come within 10 % of the setting.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import struct
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect as websocket_connect

from edge_server.link_emulator.cli import parse_upstream
from edge_server.link_emulator.control import create_control_app
from edge_server.link_emulator.proxy import PROFILES, Link, LinkEmulator, Profile
from testing.servers import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Arrivals = list[tuple[float, int]]  # (loop time, bytes) per read
QUICK = Profile("quick", Link(None, 0.01), Link(None, 0.01))


def _now() -> float:
    return asyncio.get_running_loop().time()


Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


@asynccontextmanager
async def _loopback_server(handler: Handler) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 running `handler` per connection; yields its port. On the
    way out it waits for its connections to end, so none outlives the loop."""
    handlers: set[asyncio.Task] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())
        try:
            await handler(reader, writer)
        except ConnectionError:  # the link cut us
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        if handlers:
            await asyncio.wait(handlers, timeout=1)


@asynccontextmanager
async def _behind_link(upstream: Handler, profile: str | Profile) -> AsyncIterator[tuple[LinkEmulator, Connect]]:
    """A loopback server running `upstream`, a started link in front of it, and a function
    that opens a client connection through the link (closed on the way out)."""
    clients: list[asyncio.StreamWriter] = []
    async with _loopback_server(upstream) as port:
        link = LinkEmulator(("127.0.0.1", port), profile)
        await link.start()

        async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            reader, writer = await asyncio.open_connection("127.0.0.1", link.listen_port)
            clients.append(writer)
            return reader, writer

        try:
            yield link, connect
        finally:
            for writer in clients:
                writer.close()
            await link.close()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1 << 16):
        writer.write(data)
        await writer.drain()


async def _read_all(reader: asyncio.StreamReader) -> Arrivals:
    arrivals = []
    while data := await reader.read(1 << 16):
        arrivals.append((_now(), len(data)))
    return arrivals


async def _send_and_close(writer: asyncio.StreamWriter, size: int) -> None:
    writer.write(bytes(size))
    await writer.drain()
    writer.write_eof()


def _rate_bps(arrivals: Arrivals) -> float:
    (first, _), (last, _) = arrivals[0], arrivals[-1]
    return sum(size for _, size in arrivals[1:]) * 8 / (last - first)


async def _transfer(profile: str, up_bytes: int, down_bytes: int) -> tuple[Arrivals, Arrivals, dict]:
    """Send up_bytes up and down_bytes down at once on one connection; arrivals at each end."""
    at_upstream: asyncio.Future[Arrivals] = asyncio.get_running_loop().create_future()

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sending = asyncio.create_task(_send_and_close(writer, down_bytes))
        at_upstream.set_result(await _read_all(reader))
        await sending

    async with _behind_link(upstream, profile) as (link, connect):
        reader, writer = await connect()
        sending = asyncio.create_task(_send_and_close(writer, up_bytes))
        down = await _read_all(reader)
        await sending
        return await at_upstream, down, link.stats()


async def _round_trips(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, arrived: list[float],
                       rounds: int) -> tuple[list[float], list[float]]:
    """One-way delays up and down of `rounds` small echoes; `arrived` is filled in by the upstream."""
    up, down = [], []
    for _ in range(rounds):
        sent = _now()
        writer.write(b"x" * 16)
        await reader.readexactly(16)
        up.append(arrived[-1] - sent)
        down.append(_now() - arrived[-1])
    return up, down


def _timed_echo(arrived: list[float]) -> Handler:
    """An echo server that notes when each read arrives."""
    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1 << 16):
            arrived.append(_now())
            writer.write(data)
    return upstream


async def _is_closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), timeout=1) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("name, up_bytes, down_bytes", [
    ("3g", 400_000, 400_000),
    ("4g", 1_250_000, 2_500_000),
    ("wifi", 5_000_000, 5_000_000),
    ("edge-cloud", 10_000_000, 10_000_000),
])
def test_rate_comes_within_10_percent_each_way(name: str, up_bytes: int, down_bytes: int) -> None:
    up, down, stats = asyncio.run(_transfer(name, up_bytes, down_bytes))
    profile = PROFILES[name]
    assert _rate_bps(up) == pytest.approx(profile.up.rate_bps, rel=0.10)
    assert _rate_bps(down) == pytest.approx(profile.down.rate_bps, rel=0.10)
    assert sum(size for _, size in up) == stats["up"]["bytes"] == up_bytes
    assert sum(size for _, size in down) == stats["down"]["bytes"] == down_bytes


@pytest.mark.parametrize("name", ["4g", "3g", "edge-cloud"])
def test_one_way_delay_comes_within_10_percent(name: str) -> None:
    async def main() -> tuple[list[float], list[float]]:
        arrived: list[float] = []
        async with _behind_link(_timed_echo(arrived), name) as (_, connect):
            reader, writer = await connect()
            await _round_trips(reader, writer, arrived, 1)  # the handshake's round trip
            return await _round_trips(reader, writer, arrived, 7)

    up, down = asyncio.run(main())
    profile = PROFILES[name]
    assert statistics.median(up) == pytest.approx(profile.up.delay_s, rel=0.10)
    assert statistics.median(down) == pytest.approx(profile.down.delay_s, rel=0.10)


def test_a_new_connection_waits_one_round_trip_before_data_moves() -> None:
    slow = Profile("slow", Link(None, 0.05), Link(None, 0.05))

    async def main() -> float:
        async with _behind_link(_echo, slow) as (_, connect):
            start = _now()
            reader, writer = await connect()
            writer.write(b"hello")
            await reader.readexactly(5)
            return _now() - start

    assert asyncio.run(main()) == pytest.approx(0.2, rel=0.10)  # handshake + request + reply


def test_jitter_stays_within_bounds_and_never_reorders() -> None:
    delay, jitter = 0.03, 0.03
    jittery = Profile("jittery", Link(None, delay, jitter), Link(None, delay, jitter))
    count = 60

    async def main() -> tuple[list[float], bytes]:
        arrivals: list[tuple[float, bytes]] = []
        connected, done = asyncio.Event(), asyncio.Event()

        async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connected.set()
            while data := await reader.read(1 << 16):
                arrivals.append((_now(), data))
            done.set()

        async with _behind_link(sink, jittery) as (_, connect):
            _, writer = await connect()
            await connected.wait()  # past the handshake
            sent = []
            for index in range(count):
                sent.append(_now())
                writer.write(struct.pack(">Q", index))
                await asyncio.sleep(0.002)
            writer.write_eof()
            await done.wait()
        received, delays = b"", []
        for at, data in arrivals:
            received += data
            delays += [at - sent[i] for i in range(len(delays), len(received) // 8)]
        return delays, received

    delays, received = asyncio.run(main())
    assert received == b"".join(struct.pack(">Q", index) for index in range(count))
    assert min(delays) >= delay
    assert max(delays) <= (delay + jitter) * 1.10
    assert max(delays) - min(delays) > jitter / 2  # the jitter is there


def test_stall_holds_data_and_resume_releases_it() -> None:
    async def main() -> None:
        async with _behind_link(_echo, QUICK) as (link, connect):
            reader, writer = await connect()
            writer.write(b"before")
            assert await reader.readexactly(6) == b"before"
            link.stall()
            writer.write(b"during")
            reply = asyncio.create_task(reader.readexactly(6))
            done, _ = await asyncio.wait({reply}, timeout=0.3)
            assert not done and link.stats()["up"]["bytes"] == 6
            link.resume()
            assert await asyncio.wait_for(reply, timeout=1) == b"during"

    asyncio.run(main())


def test_cut_closes_open_connections_and_new_ones_still_work() -> None:
    async def main() -> None:
        async with _behind_link(_echo, QUICK) as (link, connect):
            connections = [await connect() for _ in range(2)]
            for reader, writer in connections:
                writer.write(b"hi")
                await reader.readexactly(2)
            assert link.cut() == 2
            for reader, _ in connections:
                assert await _is_closed(reader)
            assert link.stats()["connections"]["open"] == 0
            reader, writer = await connect()
            writer.write(b"again")
            assert await reader.readexactly(5) == b"again"

    asyncio.run(main())


def test_offline_cuts_open_connections_and_refuses_new_ones() -> None:
    async def main() -> None:
        reached = []

        async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            reached.append(writer)
            await _echo(reader, writer)

        async with _behind_link(upstream, QUICK) as (link, connect):
            reader, writer = await connect()
            writer.write(b"hi")
            await reader.readexactly(2)
            link.set_profile("offline")
            assert await _is_closed(reader)
            reader, writer = await connect()
            assert await _is_closed(reader)
            assert len(reached) == 1
            assert link.stats()["connections"] == {"open": 0, "accepted": 1, "refused": 1}
            link.set_profile("wifi")
            reader, writer = await connect()
            writer.write(b"back")
            assert await reader.readexactly(4) == b"back"

    asyncio.run(main())


def _control(link: LinkEmulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_control_app(link)), base_url="http://link")


def test_switching_profile_through_the_control_api_changes_the_delay_of_an_open_connection() -> None:
    async def main() -> tuple[list[float], list[float]]:
        arrived: list[float] = []
        async with _behind_link(_timed_echo(arrived), "4g") as (link, connect), _control(link) as control:
            assert (await control.get("/profile")).json()["name"] == "4g"
            reader, writer = await connect()
            await _round_trips(reader, writer, arrived, 1)
            before, _ = await _round_trips(reader, writer, arrived, 5)
            switched = await control.put("/profile/3g")
            assert switched.status_code == 200 and switched.json()["up"]["delay_s"] == 0.15
            after, _ = await _round_trips(reader, writer, arrived, 5)
            return before, after

    before, after = asyncio.run(main())
    assert statistics.median(before) == pytest.approx(0.04, rel=0.10)
    assert statistics.median(after) == pytest.approx(0.15, rel=0.10)


def test_control_api_sets_a_custom_profile_stalls_resumes_cuts_and_counts() -> None:
    custom = {"name": "slow", "up": {"rate_bps": 2e6, "delay_s": 0.1, "jitter_s": 0.02},
              "down": {"rate_bps": None, "delay_s": 0.1, "jitter_s": 0.0}, "offline": False}

    async def main() -> None:
        link = LinkEmulator(("127.0.0.1", 9), "wifi")  # never started: no traffic, only state
        async with _control(link) as control:
            assert (await control.post("/profile", json=custom)).json() == custom
            assert link.profile == Profile("slow", Link(2e6, 0.1, 0.02), Link(None, 0.1))
            assert (await control.post("/stall")).json() == {"stalled": True} and link.stalled
            assert (await control.post("/resume")).json() == {"stalled": False} and not link.stalled
            assert (await control.post("/cut")).json() == {"cut": 0}
            stats = (await control.get("/stats")).json()
            assert stats["profile"] == "slow" and stats["up"] == {"bytes": 0} and stats["down"] == {"bytes": 0}

    asyncio.run(main())


@pytest.mark.parametrize("body, message", [
    (b"not json", "bad profile"),
    (b"[1, 2]", "profile must be a JSON object"),
    (b'{"up": {"rate_bps": 1e6, "delay_s": 0}}', "profile lacks down"),
    (b'{"up": {"rate_bps": -1, "delay_s": 0}, "down": {"rate_bps": 1, "delay_s": 0}}', "up.rate_bps must be"),
    (b'{"up": {"rate_bps": 1, "delay_s": 0}, "down": {"rate_bps": 1, "delay_s": "5ms"}}', "down.delay_s must be"),
    (b'{"up": {"rate_bps": 1, "delay_s": 0, "loss": 0.1}, "down": {"rate_bps": 1, "delay_s": 0}}',
     "up has unknown field(s) loss"),
])
def test_control_api_rejects_a_bad_profile_and_says_why(body: bytes, message: str) -> None:
    async def main() -> httpx.Response:
        async with _control(LinkEmulator(("127.0.0.1", 9))) as control:
            return await control.post("/profile", content=body)

    response = asyncio.run(main())
    assert response.status_code == 400 and message in response.json()["error"]


def test_control_api_lists_the_profiles_for_an_unknown_name() -> None:
    async def main() -> httpx.Response:
        async with _control(LinkEmulator(("127.0.0.1", 9))) as control:
            return await control.put("/profile/5g")

    response = asyncio.run(main())
    assert response.status_code == 404 and response.json()["profiles"] == list(PROFILES)


async def _websocket_echo(socket: WebSocket) -> None:
    await socket.accept()
    while True:
        message = await socket.receive()
        if message["type"] == "websocket.disconnect":
            return
        await socket.send_bytes(message["bytes"]) if message.get("bytes") else await socket.send_text(message["text"])


async def _reversed_body(request: Request) -> Response:
    return Response(bytes(reversed(await request.body())), headers={"x-seen-host": request.headers["host"]})


def test_http_and_websocket_pass_through_unchanged() -> None:
    app = Starlette(routes=[Route("/reverse", _reversed_body, methods=["POST"]),
                            WebSocketRoute("/echo", _websocket_echo)])
    blob = bytes(range(256)) * 400

    async def main() -> None:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        link = LinkEmulator(("127.0.0.1", port), "wifi")
        await link.start()
        base = f"127.0.0.1:{link.listen_port}"
        try:
            async with httpx.AsyncClient() as http:
                for _ in range(2):  # the second on the same kept-alive connection
                    response = await http.post(f"http://{base}/reverse", content=blob)
                    assert response.content == bytes(reversed(blob)) and response.headers["x-seen-host"] == base
            async with websocket_connect(f"ws://{base}/echo", compression=None) as socket:
                await socket.send(blob)
                assert await socket.recv() == blob
                await socket.send("text too")
                assert await socket.recv() == "text too"
        finally:
            await link.close()
            server.should_exit = True
            await serving

    asyncio.run(main())


def test_strata_link_command_forwards_and_obeys_its_control_port() -> None:
    async def main() -> int:
        listen, control_port = free_port(), free_port()
        async with _loopback_server(_echo) as upstream:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "strata.cli", "link", "--listen-port", str(listen), "--control-port",
                str(control_port), "--upstream", f"127.0.0.1:{upstream}", "--profile", "4g")
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{control_port}") as control:
                    for _ in range(200):
                        try:
                            assert (await control.get("/profile")).json()["name"] == "4g"
                            break
                        except httpx.TransportError:
                            await asyncio.sleep(0.05)
                    else:
                        pytest.fail("strata link did not answer on its control port within 10 s")
                    reader, writer = await asyncio.open_connection("127.0.0.1", listen)
                    writer.write(b"through")
                    assert await reader.readexactly(7) == b"through"
                    assert (await control.put("/profile/3g")).status_code == 200
                    assert (await control.get("/stats")).json()["down"]["bytes"] == 7
                    writer.close()
            finally:
                process.terminate()
            return await asyncio.wait_for(process.wait(), timeout=10)

    assert asyncio.run(main()) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once shut down


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:8000", ("127.0.0.1", 8000)),
    ("localhost:1", ("localhost", 1)),
    ("[::1]:8001", ("::1", 8001)),
])
def test_upstream_on_loopback_is_accepted(text: str, expected: tuple[str, int]) -> None:
    assert parse_upstream(text) == expected


@pytest.mark.parametrize("text, message", [
    ("192.0.2.1:80", "not a loopback address"),
    ("example.org:80", "not a loopback address"),
    ("127.0.0.1", "must be HOST:PORT"),
    ("127.0.0.1:0", "must be HOST:PORT"),
])
def test_upstream_elsewhere_or_malformed_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_upstream(text)
    if "loopback" in message:
        assert parse_upstream(text, allow_remote=True)[1] == 80
