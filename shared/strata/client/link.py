"""The client's link to the edge: one WebSocket, replies matched to requests, reconnects.

Frames are strata.wire frames. The edge's HELLO comes first on every connection and
says what it serves; each INFER is answered by the RESULT or ERROR with its id, each
PING by the PONG with its seq. When the connection drops, every pending exchange fails
at once with ConnectionError, and the link reconnects after BACKOFF_S.
"""

from __future__ import annotations

import asyncio
import json

from strata import wire
from strata.client.transport import Socket, Transport
from strata.offload import RequestError
from strata.wire import Frame, MessageType, WireError

REPLY_TIMEOUT_S = 5.0  # past this, an exchange fails (the client then falls back on the device)
BACKOFF_S = [0.5, 1, 2, 4, 8]  # waits between reconnection attempts, the last one repeating


class EdgeLink:
    def __init__(self, transport: Transport, url: str) -> None:
        self.transport, self.url = transport, url
        self.socket: Socket | None = None
        self.hello: dict | None = None  # the last HELLO's header
        self.pending: dict[tuple[str, int], asyncio.Future] = {}  # ("infer", id) or ("ping", seq) -> reply
        self.ready = asyncio.Event()  # connected, and HELLO received
        self.attempt = 0
        self._closed: asyncio.Future | None = None
        self._reconnect_now = False
        self._generation = 0  # which connection is current: a late close of an old one is ignored
        self.stopped = False
        self.reply_timeout_s = REPLY_TIMEOUT_S

    async def run(self) -> None:
        """Keep a connection up until stop()."""
        while not self.stopped:
            try:
                await self._connect()
                self.attempt = 0
                await self._closed
            except (ConnectionError, asyncio.TimeoutError) as exc:
                self._notify("unreachable", detail=str(exc) or "no HELLO in time")
            if self._reconnect_now:
                self._reconnect_now = False
                continue
            wait = BACKOFF_S[min(self.attempt, len(BACKOFF_S) - 1)]
            self.attempt += 1
            self._notify("reconnecting", detail=f"attempt {self.attempt} in {wait} s")
            await asyncio.sleep(wait)

    async def _connect(self) -> None:
        self._generation += 1
        generation = self._generation
        self._closed = asyncio.get_running_loop().create_future()
        socket = await self.transport.open(self.url, self._on_message,
                                           lambda reason: self._on_close(generation, reason))
        self.socket = socket
        try:
            await asyncio.wait_for(self.ready.wait(), self.reply_timeout_s)  # HELLO comes first
        except asyncio.TimeoutError:
            socket.close()
            raise

    def stop(self) -> None:
        """Close the connection for good: run() returns instead of reconnecting."""
        self.stopped = True
        if self.socket is not None:
            self.socket.close()

    def reconnect(self, url: str) -> None:
        """Use another URL from now on (e.g. with other query parameters): the open
        connection closes, and the next one opens at once."""
        self.url = url
        if self.socket is not None:
            self._reconnect_now = True
            socket = self.socket
            self._on_close(self._generation, "reconnecting")
            socket.close()

    def _on_close(self, generation: int, reason: str) -> None:
        if generation != self._generation:
            return  # an older connection's late close
        self.ready.clear()
        self.socket = None
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError(f"the edge closed the connection ({reason})"))
        self.pending.clear()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(reason)

    def _on_message(self, data: bytes) -> None:
        try:
            frame = wire.decode(data)
        except WireError as exc:
            self._notify("error", detail=f"the edge sent a frame this client cannot read: {exc}")
            return
        if frame.type is MessageType.HELLO:
            self.hello = frame.header
            self.ready.set()
            self._notify("connected", hello=json.dumps(frame.header))
            return
        # A PONG, or an ERROR about a PING, carries its seq; a RESULT, or an ERROR about an INFER, its id.
        by_seq = frame.type is MessageType.PONG or frame.type is MessageType.ERROR and "seq" in frame.header
        key = ("ping", frame.header.get("seq")) if by_seq else ("infer", frame.header.get("id"))
        future = self.pending.pop(key, None)
        if future is not None and not future.done():
            future.set_result((frame, len(data)))
        elif frame.type is MessageType.ERROR:
            self._notify("error", detail=frame.header.get("message", ""))

    def _notify(self, state: str, **data: object) -> None:
        self.transport.notify("edge", {"state": state, **data})

    @property
    def up(self) -> bool:
        return self.socket is not None and self.ready.is_set()

    async def exchange(self, key: tuple[str, int], frame: Frame) -> tuple[Frame, int, int]:
        """Send a frame and await its reply: (reply, bytes sent, bytes received).
        Raise ConnectionError, or asyncio.TimeoutError after reply_timeout_s; RequestError
        `too-large`, without sending it, for a frame over the edge's frame limit (HELLO's
        max_frame_bytes), which the edge would only refuse."""
        if not self.up:
            raise ConnectionError("not connected to the edge")
        data = wire.encode(frame)
        limit = wire.frame_limit(self.hello)
        if limit is not None and len(data) > limit:
            raise RequestError("too-large", f"this {frame.type.name} frame of {len(data):,} bytes exceeds the edge's "
                                            f"frame limit of {limit:,} bytes (max_frame_bytes in its HELLO); not sent")
        future = asyncio.get_running_loop().create_future()
        self.pending[key] = future
        try:
            await self.socket.send(data)
            reply, received = await asyncio.wait_for(future, self.reply_timeout_s)
            return reply, len(data), received
        finally:
            self.pending.pop(key, None)
            if future.done() and not future.cancelled():
                future.exception()  # the caller has its own error already: mark this one seen
            future.cancel()
