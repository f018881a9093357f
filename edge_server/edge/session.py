"""One browser connection's state and its answer to each frame.

The session takes the bytes of one WebSocket message and returns the bytes to send
back, so the socket loop stays trivial. Every frame gets an answer: a bad one gets an
ERROR frame with its id (an INFER's `id`, a PING's `seq`) when it has one, and the
connection lives on. Anything unforeseen still gets an ERROR `internal`, and its
traceback goes to the log. Each RESULT's timing includes `edge_total_ms` (frame in to
result ready; encoding the few logits after that takes some 20 us) and
`edge_overhead_ms`: that minus model compute, queueing for a worker (`edge_queue_ms`,
which grows with load) and the cloud round trip, i.e. what decoding, validation and
scheduling cost.

INFER tensors are validated and decoded in a thread, so that inflating and checking a
large one delays only its own request, not every client on the event loop (a wrong-rank
zlib bomb used to stall them all for 1.5 s).

Every reply is counted in the edge's metrics (edge_server/edge/metrics.py) and logged:
one line per INFER at debug, one per ERROR at warning (`busy` at debug: it is flow
control, not a fault), each naming the connection and the request's `id` (a PING's
`seq`). PINGs may report the branch exits a worker had since its last PONG (`exits`).
During a graceful shutdown (edge_server/edge/drain.py) every frame gets ERROR
`shutting-down`.
"""

from __future__ import annotations

import asyncio
import logging
import time

from strata import wire
from strata.offload import RequestError, error_frame, read_infer, result_frame
from strata.wire import Frame, MessageType, WireError

from edge_server.config import Settings
from edge_server.edge.drain import Drain
from edge_server.edge.limits import ConnectionLimits
from edge_server.edge.metrics import CLOUD_ROUND_TRIP, EdgeMetrics
from edge_server.edge.runtime import EdgeRuntime

log = logging.getLogger("strata.edge")
MAX_EXITS = 2**53 - 1  # a PING's `exits`: the largest integer a double (a JavaScript number) holds exactly


class EdgeSession:
    def __init__(self, settings: Settings, runtime: EdgeRuntime, limits: ConnectionLimits, private: bool = False,
                 metrics: EdgeMetrics | None = None, drain: Drain | None = None, connection: int = 0) -> None:
        """private: the client promised that raw inputs never leave its device (the
        `?private=1` of its WebSocket URL); an INFER at cut 0 is refused. metrics and
        drain are the app's (a session alone gets its own); connection numbers the
        session in the log."""
        self.settings, self.runtime, self.limits, self.private = settings, runtime, limits, private
        self.metrics = metrics or EdgeMetrics()
        self.drain = drain or Drain(settings.shutdown_timeout_s)
        self.connection = connection
        self.queued_bytes = 0  # this connection's replies built and not yet sent

    def hello(self) -> bytes:
        return self._queue(wire.encode(Frame(MessageType.HELLO, {**self.runtime.hello(), "private": self.private,
                                                                  "max_frame_bytes": self.settings.max_frame_bytes})))

    async def handle(self, data: bytes | str | None) -> bytes:
        """Answer one message; never raises. Call sent() with the reply once it is out."""
        kind, reply, encoded = await self._answer(data)
        self._observe(kind, reply)
        return self._queue(encoded)

    def _observe(self, kind: MessageType | None, reply: Frame) -> None:
        """Count a reply in the metrics and log it; `kind` is the type of the frame it
        answers, None if that frame could not be read."""
        header = reply.header
        if reply.type is MessageType.RESULT:
            self.metrics.result(header)
            timing = header["timing"]
            log.debug("connection %d INFER %d: tier %s in %.1f ms (edge %.1f, queue %.1f, cloud %.1f)%s",
                      self.connection, header["id"], header["tier"], timing["edge_total_ms"], timing["edge_compute_ms"],
                      timing["edge_queue_ms"], sum(timing.get(key, 0.0) for key in CLOUD_ROUND_TRIP),
                      f", fell back: {header['fallback']}" if header["fallback"] else "",
                      extra={"connection": self.connection, "request_id": header["id"], "tier": header["tier"],
                             "fallback": header["fallback"], "edge_total_ms": timing["edge_total_ms"]})
        elif reply.type is MessageType.ERROR:
            code = header["code"]
            self.metrics.error(code, infer=kind is MessageType.INFER)
            request_id = header.get("id", header.get("seq"))
            what = "an unreadable frame" if kind is None else kind.name
            what += "" if request_id is None else f" {request_id}"
            log.log(logging.DEBUG if code == "busy" else logging.WARNING, "connection %d %s: ERROR %s: %s",
                    self.connection, what, code, header["message"],
                    extra={"connection": self.connection, "request_id": request_id, "code": code})

    def sent(self, reply: bytes) -> None:
        """The reply left (or the client did): its bytes no longer count as queued."""
        self.queued_bytes -= len(reply)
        self.limits.release(len(reply))

    def _queue(self, reply: bytes) -> bytes:
        self.queued_bytes += len(reply)
        self.limits.hold(len(reply))
        return reply

    async def _answer(self, data: bytes | str | None) -> tuple[MessageType | None, Frame, bytes]:
        """(the type of the frame answered, None if unreadable; the reply; its bytes)."""
        received = time.perf_counter()
        if not isinstance(data, (bytes, bytearray)):
            return _encoded(None, wire.error("malformed", "expected a binary frame (see docs/protocol.md); got a "
                                                          "text message"))
        try:
            frame = wire.decode(data, max_size=self.settings.max_frame_bytes)
        except WireError as exc:
            return _encoded(None, wire.error(exc.code, str(exc)))
        request_id, seq = frame.header.get("id"), frame.header.get("seq")
        request_id = request_id if type(request_id) is int and frame.type is MessageType.INFER else None
        seq = seq if type(seq) is int and frame.type is MessageType.PING else None
        try:
            if self.drain.draining:
                reply = wire.error("shutting-down", "the edge is shutting down: reconnect (another edge may answer) "
                                                    "and send this again", request_id, seq)
            elif frame.type is MessageType.PING:
                reply = self._pong(frame)
            elif frame.type is MessageType.INFER:
                reply = await self._infer(frame, received)
            else:
                reply = wire.error("unsupported", f"the edge accepts PING and INFER frames, not {frame.type.name}")
            return _encoded(frame.type, reply)
        except Exception:  # the last resort: a bug, not the client's fault; say so and keep serving
            log.exception("internal error answering a %s frame (id %r, seq %r)", frame.type.name, request_id, seq)
            return _encoded(frame.type, wire.error("internal", "the edge failed to answer this frame; the failure is "
                                                               "in its log", request_id, seq))

    async def _infer(self, frame: Frame, received: float) -> Frame:
        try:
            request = await asyncio.to_thread(read_infer, frame, self.runtime.cut_shapes, self.runtime.cut_dtypes,
                                              self.settings.max_batch, self.settings.max_tensor_bytes // 4)
            if self.private and request.plan.a == 0:
                raise RequestError("private-session", "this session is private (?private=1): raw inputs must not "
                                                      "leave the device, so a plan with a = 0 is refused",
                                   request.request_id)
            result = await self.runtime.infer(request)
            total = (time.perf_counter() - received) * 1000
            timing = result.timing
            waited = sum(timing.get(k, 0.0) for k in (
                "edge_compute_ms", "edge_queue_ms", "edge_to_cloud_ms", "cloud_compute_ms", "cloud_to_edge_ms",
                "cloud_round_trip_ms"))
            timing.update(edge_total_ms=total, edge_overhead_ms=max(total - waited, 0.0))
            return result_frame(result)
        except RequestError as exc:
            return error_frame(exc)

    def _pong(self, frame: Frame) -> Frame:
        header = frame.header
        seq, sent, reply_bytes = header.get("seq"), header.get("sent_ms"), header.get("reply_bytes", 0)
        exits = header.get("exits", 0)
        if type(seq) is not int or not wire.is_number(sent) or type(reply_bytes) is not int or type(exits) is not int:
            return wire.error("malformed", "PING header needs integer 'seq', number 'sent_ms' and integer "
                                           "'reply_bytes' (and 'exits', if present)", seq=seq if type(seq) is int else None)
        limit = self.settings.max_probe_reply_bytes
        if not 0 <= reply_bytes <= limit:
            return wire.error("bad-request", f"reply_bytes must be between 0 and {limit}, got {reply_bytes}", seq=seq)
        if not 0 <= exits <= MAX_EXITS:
            return wire.error("bad-request", f"exits must be between 0 and 2**53 - 1, got {str(exits)[:24]}", seq=seq)
        if not self.limits.room_for(reply_bytes, self.queued_bytes):
            return wire.error("busy", f"{self.queued_bytes} bytes of replies already wait for this client and "
                                      f"{self.limits.queued_bytes} for all: read them first, or probe again later",
                              seq=seq)
        self.metrics.exits.inc(exits)
        reply = {"seq": seq, "sent_ms": sent, "received_bytes": len(frame.payload), "server_ms": time.time() * 1000,
                 "edge_queued": self.runtime.queued, "cloud": self.runtime.cloud_up,
                 "refused_variants": self.runtime.variants.refused}
        return Frame(MessageType.PONG, reply, bytes(reply_bytes))


def _encoded(kind: MessageType | None, reply: Frame) -> tuple[MessageType | None, Frame, bytes]:
    return kind, reply, wire.encode(reply)
