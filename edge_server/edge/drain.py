"""Graceful shutdown: the frames being answered are answered, new ones are refused.

On SIGTERM (or Ctrl-C) the server (edge_server/serving.py) first stops accepting
connections, then calls the Drain. From then on every frame that arrives gets ERROR
`shutting-down` (docs/protocol.md), and /health/ready says 503, while the frames
already being worked on, cloud forwards included, run to their reply. Once none is left,
or after `timeout_s`, uvicorn closes the WebSockets with 1012 (service restart): clients
reconnect, to another edge behind a proxy. A reply still unsent then is lost, and its
client falls back on its device, as for any connection that drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator

log = logging.getLogger("strata.edge")
POLL_S = 0.02


class Drain:
    def __init__(self, timeout_s: float) -> None:
        """timeout_s: the longest wait for the frames in flight (seconds)."""
        self.timeout_s = timeout_s
        self.active = 0  # frames being answered, from arrival to the reply handed to the socket
        self.draining = False

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Count one frame in flight while the block runs."""
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1

    async def __call__(self) -> int:
        """Refuse new frames from now on; return once none is in flight, or after
        timeout_s, with the number still in flight."""
        self.draining = True
        began = time.monotonic()
        log.info("shutting down: answering %d frames in flight (at most %.0f s); new frames get ERROR "
                 "shutting-down", self.active, self.timeout_s)
        while self.active and time.monotonic() - began < self.timeout_s:
            await asyncio.sleep(POLL_S)
        if self.active:
            log.warning("shutting down: %d frames still in flight after %.0f s; their connections close unanswered",
                        self.active, self.timeout_s)
        else:
            log.info("shutting down: every frame answered, in %.2f s", time.monotonic() - began)
        return self.active
