"""A network link in user space: an asyncio TCP proxy that shapes traffic per direction.

The kernel here has no netem, so Strata emulates its links (browser -> edge, edge -> cloud)
with this proxy. It forwards bytes, not messages, so HTTP and WebSocket pass unchanged.
Each direction of a profile has a bandwidth, a one-way delay and a jitter:

- bandwidth: one token bucket per direction, shared by all connections as on a real
  access link, with a small burst (BURST_S at the link's rate, at least 4 packets) and
  a short queue before it (QUEUE_S), beyond which the sender is held back;
- delay: bytes that leave the bucket join a timed queue and come out delay_s later, so
  many bytes are in flight at once, as on a real pipe (the bandwidth-delay product holds);
- jitter: each chunk waits a further uniform(0, jitter_s), but never overtakes an
  earlier chunk of its connection;
- a new connection waits one round trip (the TCP handshake) before any data moves.

On demand it stalls (holds all data until resumed), cuts (resets every open connection)
or, under the `offline` profile, closes every connection at once.

Delays are one-way: a profile's round trip is up.delay_s + down.delay_s. "up" is client ->
upstream, "down" upstream -> client. Every wait is until an absolute time on the loop's
clock, so on a busy machine a chunk may come late but the average rate and delay hold.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

PACKET_BYTES = 1500
BURST_S = 0.002  # depth of the token bucket, in seconds of the link's rate
MAX_CHUNK_BYTES = 64 * 1024
# How far a sender may run ahead of the bucket, as into a router's queue. It also keeps the
# bucket's schedule ahead of the clock, so a wake-up late by less than this costs no bandwidth.
QUEUE_S = 0.05
IN_FLIGHT_CHUNKS = 1024  # per connection and direction; beyond it the sender is held back


@dataclass(frozen=True)
class Link:
    """One direction of a link. rate_bps is in bits per second, None for unlimited."""

    rate_bps: float | None
    delay_s: float
    jitter_s: float = 0.0

    def __post_init__(self) -> None:
        if self.rate_bps is not None and not (math.isfinite(self.rate_bps) and self.rate_bps > 0):
            raise ValueError(f"rate_bps must be a number > 0, or None for unlimited; got {self.rate_bps}")
        for name in ("delay_s", "jitter_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {value}")

    @property
    def chunk_bytes(self) -> int:
        """Bytes moved at a time: the bucket's depth, so the rate is smooth at small scale."""
        if self.rate_bps is None:
            return MAX_CHUNK_BYTES
        return min(MAX_CHUNK_BYTES, max(4 * PACKET_BYTES, int(self.rate_bps * BURST_S / 8)))


@dataclass(frozen=True)
class Profile:
    """A named link: `up` is client -> upstream, `down` upstream -> client. Offline: no traffic."""

    name: str
    up: Link
    down: Link
    offline: bool = False


def _symmetric(name: str, rate_bps: float, delay_s: float) -> Profile:
    return Profile(name, Link(rate_bps, delay_s), Link(rate_bps, delay_s))


PROFILES: dict[str, Profile] = {profile.name: profile for profile in (
    _symmetric("wifi", 50e6, 0.005),
    Profile("4g", Link(10e6, 0.040), Link(20e6, 0.040)),
    _symmetric("3g", 1.5e6, 0.150),
    _symmetric("edge-cloud", 100e6, 0.020),
    Profile("offline", Link(None, 0.0), Link(None, 0.0), offline=True),
)}


class _Direction:
    """What one direction shares across connections: its token bucket and a byte count."""

    def __init__(self) -> None:
        self.bucket_time = 0.0  # when the bucket would be full again had nothing more come
        self.bytes = 0

    def release_time(self, link: Link, now: float, size: int) -> float:
        """When `size` bytes that arrived at `now` may leave the bucket.

        The token bucket as a schedule (GCRA): each chunk pushes bucket_time on by its
        transmission time, and may leave once the bucket is no more than a burst behind.
        """
        if link.rate_bps is None:
            return now
        self.bucket_time = max(self.bucket_time, now) + size * 8 / link.rate_bps
        return max(now, self.bucket_time - link.chunk_bytes * 8 / link.rate_bps)


async def _sleep_until(when: float) -> None:
    delay = when - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


class LinkEmulator:
    """A TCP proxy on listen_host:listen_port that forwards to `upstream` through a profile.

    Call set_profile, stall, resume and cut from the loop the emulator runs in.
    """

    def __init__(self, upstream: tuple[str, int], profile: str | Profile = "wifi",
                 listen_host: str = "127.0.0.1", listen_port: int = 0) -> None:
        self.upstream = upstream
        self.listen_host = listen_host
        self.listen_port = listen_port  # 0 picks a free port; start() fills in the real one
        self._profile = self._resolve(profile)
        self._up, self._down = _Direction(), _Direction()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._connections: set[asyncio.Task] = set()
        self._accepted = self._refused = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.listen_host, self.listen_port)
        self.listen_port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and cut every connection."""
        if self._server is not None:
            self._server.close()
        tasks = list(self._connections)
        self.cut()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    @property
    def profile(self) -> Profile:
        return self._profile

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    def set_profile(self, profile: str | Profile) -> Profile:
        """Switch profile; data in flight keeps its schedule. Going offline cuts every connection."""
        self._profile = self._resolve(profile)
        if self._profile.offline:
            self.cut()
        log.info("link profile: %s", self._profile)
        return self._profile

    def stall(self) -> None:
        """Hold all data, in both directions, until resume(); senders are held back too."""
        self._flowing.clear()

    def resume(self) -> None:
        """Release what stall() held; data whose time has passed goes at once."""
        self._flowing.set()

    def cut(self) -> int:
        """Drop every open connection on both sides (a reset, nothing more delivered); return how many."""
        for task in self._connections:
            task.cancel()
        return len(self._connections)

    def stats(self) -> dict:
        """Bytes delivered per direction and connections, for the control API."""
        return {
            "profile": self._profile.name,
            "stalled": self.stalled,
            "up": {"bytes": self._up.bytes},
            "down": {"bytes": self._down.bytes},
            "connections": {"open": len(self._connections), "accepted": self._accepted,
                            "refused": self._refused},
        }

    @staticmethod
    def _resolve(profile: str | Profile) -> Profile:
        if isinstance(profile, Profile):
            return profile
        if profile not in PROFILES:
            raise ValueError(f"unknown link profile {profile!r}; known: {', '.join(PROFILES)}")
        return PROFILES[profile]

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        """Admit one client, refusing it when offline. The work runs in a task of its own, so
        that cut() cancels that task and not this one, whose cancellation asyncio would log."""
        if self._profile.offline:
            self._refused += 1
            client_writer.transport.abort()
            return
        self._accepted += 1
        connection = asyncio.create_task(self._forward(client_reader, client_writer))
        self._connections.add(connection)
        connection.add_done_callback(self._connections.discard)
        await asyncio.wait({connection})

    async def _forward(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        """A handshake's round trip, then both pipes until both ends close; a reset if one fails."""
        writers = [client_writer]
        graceful = False
        try:
            await asyncio.sleep(self._profile.up.delay_s + self._profile.down.delay_s)
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            except OSError as exc:
                log.warning("link: cannot reach upstream %s:%s: %s", *self.upstream, exc)
                return
            writers.append(upstream_writer)
            async with asyncio.TaskGroup() as pipes:
                pipes.create_task(self._pipe(client_reader, upstream_writer, self._up, lambda: self._profile.up))
                pipes.create_task(self._pipe(upstream_reader, client_writer, self._down, lambda: self._profile.down))
            graceful = True
        except* OSError as errors:  # one side went away: the other goes too
            log.debug("link: connection dropped: %s", errors.exceptions[0])
        finally:
            for writer in writers:
                writer.close() if graceful else writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    direction: _Direction, link: Callable[[], Link]) -> None:
        """One direction of one connection: a sender into a timed queue, a receiver out of it."""
        in_flight: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(IN_FLIGHT_CHUNKS)
        async with asyncio.TaskGroup() as ends:
            ends.create_task(self._send(reader, in_flight, direction, link))
            ends.create_task(self._receive(in_flight, writer, direction))

    async def _send(self, reader: asyncio.StreamReader, in_flight: asyncio.Queue,
                    direction: _Direction, link: Callable[[], Link]) -> None:
        """Read, and stamp each chunk with its delivery time (b"" is EOF); hold back a sender
        that gets more than QUEUE_S ahead of the bucket, as a router's queue would."""
        loop = asyncio.get_running_loop()
        last_delivery = 0.0
        while True:
            await self._flowing.wait()
            data = await reader.read(link().chunk_bytes)
            current = link()
            leave = direction.release_time(current, loop.time(), len(data))
            last_delivery = max(last_delivery, leave + current.delay_s + random.uniform(0, current.jitter_s))
            await in_flight.put((last_delivery, data))
            if not data:
                return
            await _sleep_until(leave - QUEUE_S)

    async def _receive(self, in_flight: asyncio.Queue, writer: asyncio.StreamWriter, direction: _Direction) -> None:
        """Write each chunk at its delivery time, unless stalled; pass EOF on as a half-close."""
        while True:
            delivery, data = await in_flight.get()
            await _sleep_until(delivery)
            await self._flowing.wait()
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            direction.bytes += len(data)
            await writer.drain()
