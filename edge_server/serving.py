"""How Strata's servers run under uvicorn: on a socket bound before anything is printed,
with a read timeout, logging as edge_server/logs.py says, and shutting down gracefully.

Binding first turns a taken port into a one-line error before the command says where
to open it. uvicorn gives a client as long as it likes to send a request's headers, so
200 clients sending them a byte at a time held 200 connections open; HeaderDeadline
closes a connection whose headers are not complete within the read timeout. Once a
connection is a WebSocket, the keepalive ping (every read timeout, answered within one)
does the same for a client that stalls half-way through a frame, as it cannot answer
until its frame is complete, and for one that stops reading. uvicorn then closes the
socket politely, which waits for its send buffer to drain: a client that does not read
never lets it, and the replies queued behind would wait for ever, so
KeepaliveDeadline drops it at once.

On SIGTERM or Ctrl-C uvicorn stops accepting, then closes every WebSocket at once (1012);
DrainingServer first lets the app answer the frames it is working on (the edge's Drain,
edge_server/edge/drain.py). A second Ctrl-C skips that wait.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import socket
from collections.abc import Awaitable, Callable

import h11
import uvicorn
from starlette.types import ASGIApp
from strata.cli import CommandError
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from edge_server.logs import log_config

STARTUP_FAILURE = 3  # uvicorn's exit status when the app fails to start


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port), made as uvicorn makes its own;
    CommandError naming the port if it cannot be had (taken, or not this machine's).

    The protocol is named (IPPROTO_TCP), not left 0: asyncio turns Nagle's algorithm off
    (TCP_NODELAY) only on connections whose socket says TCP, and with it on, every
    response after the first on a kept-alive connection waited 40 ms for the client's
    delayed ACK (h11 writes the headers and the body apart)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # uvicorn's default backlog
    except OSError as exc:
        sock.close()
        hint = ": another program listens there; stop it or choose another port" if exc.errno == errno.EADDRINUSE else ""
        raise CommandError(f"cannot listen on {host}:{port} ({exc.strerror}){hint}") from None
    return sock


def port_free(host: str, port: int) -> None:
    """CommandError if (host, port) cannot be bound now, e.g. for a helper about to take it."""
    bind(host, port).close()


class HeaderDeadline(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request headers are not
    complete `timeout_s` after the connection opened or the request's first byte came."""

    def __init__(self, *args: object, timeout_s: float, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_s = timeout_s
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def _reading_headers(self) -> bool:
        # h11 stays IDLE until a request's headers are complete; after an upgrade the
        # transport belongs to the WebSocket protocol.
        return (self.conn.their_state is h11.IDLE and self.transport.get_protocol() is self
                and not self.transport.is_closing())

    def _watch(self) -> None:
        if not self._reading_headers():
            self._cancel()
        elif self._deadline is None:
            self._deadline = self.loop.call_later(self.timeout_s, self._expire)

    def _expire(self) -> None:
        self._deadline = None
        if self._reading_headers():
            self.transport.close()

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


class KeepaliveDeadline(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol (websockets, sans-I/O), dropping a client that misses
    the keepalive at once instead of waiting for it to read what is queued for it."""

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        self.transport.abort()


class DrainingServer(uvicorn.Server):
    """uvicorn's server, which on shutdown stops accepting, then awaits `drain` (the app
    finishing what it is doing), then closes the connections as uvicorn does."""

    def __init__(self, config: uvicorn.Config, drain: Callable[[], Awaitable[object]] | None) -> None:
        super().__init__(config)
        self.drain = drain

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        if self.drain is not None:
            draining = asyncio.ensure_future(self.drain())
            while not draining.done() and not self.force_exit:  # a second Ctrl-C sets force_exit
                await asyncio.wait({draining}, timeout=0.1)
            draining.cancel()
        await super().shutdown(sockets)


def serve(app: ASGIApp, sock: socket.socket, read_timeout_s: float, log_level: str, log_format: str = "text",
          drain: Callable[[], Awaitable[object]] | None = None, **options: object) -> int:
    """Run an ASGI app on a bound socket until it is stopped; return the exit status.
    `options` go to uvicorn.Config (e.g. ssl_certfile, ssl_keyfile); WebSockets get a
    keepalive ping every read_timeout_s; `drain` is awaited on shutdown (DrainingServer)."""
    config = uvicorn.Config(app, log_level=None, log_config=log_config(log_level, log_format),  # levels: logs.py
                            http=functools.partial(HeaderDeadline, timeout_s=read_timeout_s),
                            ws=KeepaliveDeadline, ws_ping_interval=read_timeout_s, ws_ping_timeout=read_timeout_s,
                            **options)
    server = DrainingServer(config, drain)
    server.run(sockets=[sock])
    return 0 if server.started else STARTUP_FAILURE
