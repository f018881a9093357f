"""One client runtime for every device: the browser's Web Worker and CPython alike.

    runtime.py               Client: plan, classify, fall back, learn from offloads
    prober.py                the probe loop: RTT, link rates, device speed, re-plans
    device_blocks.py         the device's float blocks, in numpy or the fast executor
    link.py                  the WebSocket to the edge: replies matched, reconnects
    transport.py             what the client takes from its platform (the interface)
    websockets_transport.py  CPython's transport (browser/worker.py holds the browser's)
    profile.py               how fast this device is

In CPython:

    async with strata.client.connect("ws://127.0.0.1:8000/ws") as client:
        print((await client.classify(image)).to_dict())
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from strata.client.runtime import Classified, Client
from strata.client.transport import Transport

__all__ = ["Classified", "Client", "Transport", "connect"]


async def _first_probe(client: Client) -> None:
    """Probe as soon as the edge said HELLO, rather than at the next period."""
    await client.link.ready.wait()
    client.prober.wake.set()
    await client.prober.probed.wait()


@contextlib.asynccontextmanager
async def connect(edge_url: str, transport: Transport | None = None, ready_timeout_s: float = 10.0,
                  probe_period_s: float | None = None) -> AsyncIterator[Client]:
    """A started client of the edge at `edge_url` (ws://HOST:PORT/ws), once its first
    probe has given the planner a context (or `ready_timeout_s` passed: it then answers
    on the device until the edge is back). Over CPython's transport unless one is given.
    Raise ConnectionError or RuntimeError if the edge cannot serve the model."""
    owned = transport is None
    if transport is None:
        from strata.client.websockets_transport import WebSocketsTransport

        transport = WebSocketsTransport(edge_url)
    try:
        client = await Client.load(transport, edge_url)
        if probe_period_s is not None:
            client.prober.set_period(probe_period_s)
        client.start()
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(_first_probe(client), ready_timeout_s)
            yield client
        finally:
            await client.close()
    finally:
        if owned:
            await transport.aclose()
