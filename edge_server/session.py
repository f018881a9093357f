"""One browser connection's state and its answers to each frame.

The session is sans-I/O: it takes the bytes of one WebSocket message and returns the
bytes to send back, so the socket loop stays trivial and tests need no network.
A bad frame gets an ERROR frame and the connection lives on.
"""

from __future__ import annotations

import time

from strata import wire
from strata.wire import Frame, MessageType, WireError

from edge_server.config import Settings


class EdgeSession:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.frames_in = 0

    def handle(self, data: bytes | str | None) -> bytes:
        """Answer one message; never raises for anything a client can send."""
        if not isinstance(data, (bytes, bytearray)):
            return _error("malformed", "expected a binary frame (see docs/protocol.md); got a text message")
        try:
            frame = wire.decode(data, max_size=self.settings.max_frame_bytes)
        except WireError as exc:
            return _error(exc.code, str(exc))
        self.frames_in += 1
        if frame.type is MessageType.PING:
            return self._pong(frame)
        return _error("unsupported", f"the edge does not accept {frame.type.name} frames yet; send PING")

    def _pong(self, frame: Frame) -> bytes:
        header = frame.header
        seq, sent, reply_bytes = header.get("seq"), header.get("sent_ms"), header.get("reply_bytes", 0)
        if not isinstance(seq, int) or not isinstance(sent, (int, float)) or not isinstance(reply_bytes, int):
            return _error("malformed", "PING header needs integer 'seq', number 'sent_ms' and integer 'reply_bytes'")
        limit = self.settings.max_probe_reply_bytes
        if not 0 <= reply_bytes <= limit:
            return _error("bad-request", f"reply_bytes must be between 0 and {limit}, got {reply_bytes}")
        reply = {"seq": seq, "sent_ms": sent, "received_bytes": len(frame.payload), "server_ms": time.time() * 1000}
        return wire.encode(Frame(MessageType.PONG, reply, bytes(reply_bytes)))


def _error(code: str, message: str) -> bytes:
    return wire.encode(wire.error(code, message))
