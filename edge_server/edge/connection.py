"""One browser WebSocket: HELLO first, then every frame answered, concurrently.

A slow INFER must not hold up the PINGs behind it (they measure RTT), so each frame
gets its own task; at most `max_in_flight` run per connection, after which the loop
stops reading and TCP pushes back on the client. Replies go out as they complete.

Before the handshake is accepted: the Origin must be the page's own or configured
(the Host was already checked against the allow-list, edge_server/edge/app.py), the
`private` query must be 0 or 1, and the edge must hold fewer than `max_connections`
(else it accepts, then closes with 1013, "try again later", and says why).

Each frame counts as in flight (edge_server/edge/drain.py) from its arrival until its
reply is handed to the socket, so that a graceful shutdown waits for the reply itself.
"""

from __future__ import annotations

import asyncio
import itertools
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from edge_server.config import Settings
from edge_server.edge.drain import Drain
from edge_server.edge.limits import ConnectionLimits
from edge_server.edge.metrics import EdgeMetrics
from edge_server.edge.runtime import EdgeRuntime
from edge_server.edge.session import EdgeSession

POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
log = logging.getLogger("strata.edge")
_numbers = itertools.count(1)  # names connections in the log


def origin_allowed(websocket: WebSocket, settings: Settings) -> bool:
    """Browsers send Origin; only the page's own origin and configured ones may connect.

    Clients that are not browsers send no Origin and are let through: the check exists
    to stop other web pages from using a visitor's browser against this server.
    """
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    own = f"{'https' if websocket.url.scheme == 'wss' else 'http'}://{websocket.headers.get('host', '')}"
    return origin == own or origin in settings.allowed_origins


async def serve_connection(websocket: WebSocket, settings: Settings, runtime: EdgeRuntime,
                           limits: ConnectionLimits, metrics: EdgeMetrics, drain: Drain) -> None:
    if not origin_allowed(websocket, settings):
        await websocket.close(code=POLICY_VIOLATION, reason="origin not allowed")
        return
    private = websocket.query_params.get("private", "0")
    if private not in ("0", "1"):
        await websocket.close(code=POLICY_VIOLATION, reason="the query 'private' must be 0 or 1")
        return
    if not limits.admit():
        metrics.refused.inc()
        await websocket.accept()
        await websocket.close(code=TRY_AGAIN_LATER,
                              reason=f"the edge serves at most {limits.max_connections} connections; try again later")
        return
    number = next(_numbers)
    client = websocket.client
    log.debug("connection %d from %s:%s%s", number, client.host if client else "?", client.port if client else "?",
              " (private)" if private == "1" else "", extra={"connection": number})
    try:
        await websocket.accept()
        await _serve(websocket, EdgeSession(settings, runtime, limits, private == "1", metrics, drain, number), settings)
    finally:
        limits.leave()
        log.debug("connection %d closed", number, extra={"connection": number})


async def _serve(websocket: WebSocket, session: EdgeSession, settings: Settings) -> None:
    send_lock = asyncio.Lock()
    slots = asyncio.Semaphore(settings.max_in_flight)
    tasks: set[asyncio.Task] = set()

    async def send(reply: bytes) -> None:
        try:
            async with send_lock:
                await websocket.send_bytes(reply)
        finally:
            session.sent(reply)

    async def answer(data: bytes | str | None) -> None:
        try:
            with session.drain.answering():
                await send(await session.handle(data))
        except (WebSocketDisconnect, RuntimeError):
            pass  # the client left while we worked; nobody to tell
        finally:
            slots.release()

    try:
        await send(session.hello())
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            await slots.acquire()
            data = message.get("bytes")
            task = asyncio.create_task(answer(data if data is not None else message.get("text")))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    except WebSocketDisconnect:
        pass
    finally:
        for task in tasks:
            task.cancel()
