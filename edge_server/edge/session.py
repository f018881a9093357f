"""One browser connection's state and its answer to each frame.

The session takes the bytes of one WebSocket message and returns the bytes to send
back, so the socket loop stays trivial. A bad frame gets an ERROR frame and the
connection lives on. Each RESULT's timing includes `edge_total_ms` (frame in to result
ready; encoding the few logits after that takes some 20 us) and `edge_overhead_ms`:
that minus model compute, queueing for a worker (`edge_queue_ms`, which grows with
load) and the cloud round trip, i.e. what decoding, validation and scheduling cost.
"""

from __future__ import annotations

import time

from strata import wire
from strata.offload import RequestError, error_frame, read_infer, result_frame
from strata.wire import Frame, MessageType, WireError

from edge_server.config import Settings
from edge_server.edge.runtime import EdgeRuntime


class EdgeSession:
    def __init__(self, settings: Settings, runtime: EdgeRuntime) -> None:
        self.settings, self.runtime = settings, runtime

    def hello(self) -> bytes:
        return wire.encode(Frame(MessageType.HELLO, self.runtime.hello()))

    async def handle(self, data: bytes | str | None) -> bytes:
        """Answer one message; never raises for anything a client can send."""
        received = time.perf_counter()
        if not isinstance(data, (bytes, bytearray)):
            return _error("malformed", "expected a binary frame (see docs/protocol.md); got a text message")
        try:
            frame = wire.decode(data, max_size=self.settings.max_frame_bytes)
        except WireError as exc:
            return _error(exc.code, str(exc))
        if frame.type is MessageType.PING:
            return self._pong(frame)
        if frame.type is not MessageType.INFER:
            return _error("unsupported", f"the edge accepts PING and INFER frames, not {frame.type.name}")
        try:
            request = read_infer(frame, self.runtime.cut_shapes, self.runtime.cut_dtypes)
            result = await self.runtime.infer(request)
        except RequestError as exc:
            return wire.encode(error_frame(exc))
        total = (time.perf_counter() - received) * 1000
        timing = result.timing
        waited = sum(timing.get(k, 0.0) for k in (
            "edge_compute_ms", "edge_queue_ms", "edge_to_cloud_ms", "cloud_compute_ms", "cloud_to_edge_ms",
            "cloud_round_trip_ms"))
        timing.update(edge_total_ms=total, edge_overhead_ms=max(total - waited, 0.0))
        return wire.encode(result_frame(result))

    def _pong(self, frame: Frame) -> bytes:
        header = frame.header
        seq, sent, reply_bytes = header.get("seq"), header.get("sent_ms"), header.get("reply_bytes", 0)
        if not isinstance(seq, int) or not isinstance(sent, (int, float)) or not isinstance(reply_bytes, int):
            return _error("malformed", "PING header needs integer 'seq', number 'sent_ms' and integer 'reply_bytes'")
        limit = self.settings.max_probe_reply_bytes
        if not 0 <= reply_bytes <= limit:
            return _error("bad-request", f"reply_bytes must be between 0 and {limit}, got {reply_bytes}")
        reply = {"seq": seq, "sent_ms": sent, "received_bytes": len(frame.payload), "server_ms": time.time() * 1000,
                 "edge_queued": self.runtime.queued, "refused_variants": self.runtime.variants.refused}
        return wire.encode(Frame(MessageType.PONG, reply, bytes(reply_bytes)))


def _error(code: str, message: str) -> bytes:
    return wire.encode(wire.error(code, message))
