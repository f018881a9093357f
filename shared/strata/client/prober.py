"""The client's probe loop: what the planner knows of the link and the device, kept current.

Every probe period (PROBE_PERIOD_S, or set_period()) the prober pings the edge for the
RTT, sends one probe each way sized to stay within 5 % of the link
(strata.probes.probe_bytes), re-times conv1 and the branch when no request did lately,
and re-plans. A request that took far longer than forecast wakes it at once, for a
burst of pings. The first HELLO creates the client's ContextTracker; a later one (a
reconnection) updates it. Times are milliseconds unless named _s.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from strata import wire
from strata.client.profile import time_branch, time_bundle
from strata.context import ContextTracker
from strata.offload import RequestError
from strata.probes import probe_bytes, transfer_rate_bps
from strata.wire import MessageType

if TYPE_CHECKING:
    from strata.client.runtime import Client

PROBE_PERIOD_S = 1.0  # default: one RTT ping and one probe each way per period
PERIOD_RANGE_S = (0.2, 60.0)


class Prober:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.period_s = PROBE_PERIOD_S
        self.wake = asyncio.Event()  # set when a request took far longer than forecast
        self.probed = asyncio.Event()  # set once the planner has a context: a HELLO and a first probe
        self.next_seq = 0
        self._hello: dict | None = None  # the HELLO the context was last told about
        self.stopped = False

    def set_period(self, seconds: float) -> float:
        """How often to probe (seconds, 0.2..60): longer saves the radio, shorter follows
        changes sooner. Raise ValueError outside that range."""
        low, high = PERIOD_RANGE_S
        if not low <= seconds <= high:
            raise ValueError(f"the probe period must be between {low:g} and {high:g} seconds; got {seconds}")
        self.period_s = seconds
        self.wake.set()
        return seconds

    async def ping(self, payload: int = 0, reply_bytes: int = 0) -> tuple[float, dict]:
        """One PING: (round trip in ms, the PONG's header). Raise ConnectionError or
        asyncio.TimeoutError if no PONG comes, RequestError if the edge refuses the probe
        (e.g. `busy`: its budget for queued replies is spent)."""
        clock = self.client.transport.clock
        self.next_seq += 1
        begin = clock()
        reply, _, _ = await self.client.link.exchange(
            ("ping", self.next_seq), wire.ping(self.next_seq, begin * 1000, reply_bytes, bytes(payload)))
        if reply.type is MessageType.ERROR:
            raise RequestError(str(reply.header.get("code")), str(reply.header.get("message")))
        return (clock() - begin) * 1000, reply.header

    async def measure_rtt(self, count: int) -> float:
        """Median round trip of `count` small pings, in ms (waits for the link first)."""
        await asyncio.wait_for(self.client.link.ready.wait(), 10.0)
        times = sorted([(await self.ping())[0] for _ in range(count)])
        middle = len(times) // 2
        return times[middle] if len(times) % 2 else (times[middle - 1] + times[middle]) / 2

    async def probe_once(self, pings: int = 1) -> None:
        """RTT, then one probe each way sized to stay under 5 % of the link, then re-plan."""
        client, hello = self.client, self.client.link.hello
        if hello is None:
            return
        if client.context is None:
            profile = client.profile
            client.context = ContextTracker(client.manifest, hello, profile.conv1_ms, profile.branch_ms,
                                            profile.macs_per_ms)
            for name, (manifest, _) in client.variants.items():
                client.context.add_variant(name, manifest)
            client.measure_compression()
        elif hello is not self._hello:  # reconnected: the edge may have new costs
            client.context.hello = hello
        self._hello = hello
        context = client.context
        self._refresh_device()
        context.edge_up = client.link.up
        if context.edge_up:
            try:
                for _ in range(pings):
                    rtt, report = await self.ping()
                    context.on_rtt(rtt)
                context.on_edge(report)
                size = probe_bytes(context.up.value, self.period_s)
                elapsed, _ = await self.ping(payload=size)
                context.on_rate("up", transfer_rate_bps(size, elapsed / 1000, rtt / 1000))
                size = probe_bytes(context.down.value, self.period_s)
                elapsed, _ = await self.ping(reply_bytes=size)
                context.on_rate("down", transfer_rate_bps(size, elapsed / 1000, rtt / 1000))
            except (ConnectionError, asyncio.TimeoutError):
                context.edge_up = False
            except RequestError:
                pass  # a probe the edge refused (busy): keep the estimates, probe again next period
        client.replan()
        self.probed.set()

    def _refresh_device(self) -> None:
        """Re-time conv1 and the branch on a sample (the branch alone, for a bundle without
        conv1) when no request did lately (a few ms a second), so the device's speed stays
        current when the application is idle, and a start-up profile taken while it was
        still busy loading does not stick."""
        client = self.client
        if client.model is None or client.transport.clock() - client.last_request_at < self.period_s:
            return
        if not client.model.holds_conv1:
            client.context.on_device({"branch_ms": time_branch(client.model, client.attach_shape)})
            return
        conv1_ms, branch_ms = time_bundle(client.model, client.images[self.next_seq % len(client.images)])
        client.context.on_device({"conv1_ms": conv1_ms, "branch_ms": branch_ms})

    async def run(self) -> None:
        """Probe every period; at once, with a burst of pings, when a request surprised us."""
        clock, surprised = self.client.transport.clock, False
        while not self.stopped:
            started = clock()
            await self.probe_once(pings=3 if surprised else 1)
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), max(0.05, self.period_s - (clock() - started)))
                surprised = True
            except asyncio.TimeoutError:
                surprised = False
