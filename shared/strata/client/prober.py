"""The client's probe loop: what the planner knows of the link and the device, kept current.

Every probe period (PROBE_PERIOD_S, or set_period()) the prober pings the edge for the
RTT, sends one probe each way sized to stay within 5 % of the link
(strata.probes.probe_bytes), re-times conv1 and the branch when no request did lately,
and re-plans. A request that took far longer than forecast wakes it at once, for a
burst of pings. The first HELLO creates the client's ContextTracker; a later one (a
reconnection) updates it. Times are milliseconds unless named _s.

Pings also tell the edge how many answers the device's branch gave since the last PONG
(`exits`): the edge never sees them otherwise, and counts them in its metrics. A ping
that gets no PONG hands its count back, for the next one to report.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from strata import wire
from strata.client.profile import time_branch, time_bundle
from strata.context import ContextTracker
from strata.offload import INFER_HEADER_BYTES, RequestError
from strata.probes import PROBE_CEILING, probe_bytes, transfer_rate_bps
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
        self.exits = 0  # branch exits not yet reported to the edge (Client counts them)
        self._hello: dict | None = None  # the HELLO the context was last told about
        self.stopped = False
        self._retimed = -1  # the block _refresh_device timed last

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
        exits, self.exits = self.exits, 0
        begin = clock()
        try:
            reply, _, _ = await self.client.link.exchange(
                ("ping", self.next_seq), wire.ping(self.next_seq, begin * 1000, reply_bytes, bytes(payload), exits))
        except BaseException:
            self.exits += exits
            raise
        if reply.type is MessageType.ERROR:
            self.exits += exits
            raise RequestError(str(reply.header.get("code")), str(reply.header.get("message")))
        return (clock() - begin) * 1000, reply.header

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
        await self._refresh_device()
        context.edge_up = client.link.up
        if context.edge_up:
            try:
                for _ in range(pings):
                    rtt, report = await self.ping()
                    context.on_rtt(rtt)
                context.on_edge(report)
                size = probe_bytes(context.up.value, self.period_s, ceiling=self._largest_probe(hello))
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

    @staticmethod
    def _largest_probe(hello: dict) -> int:
        """The uplink probe's ceiling (bytes): probes.probe_bytes's, and within the edge's
        frame limit once a PING's header (INFER_HEADER_BYTES bounds it) is counted."""
        limit = wire.frame_limit(hello)
        return PROBE_CEILING if limit is None else max(min(PROBE_CEILING, limit - INFER_HEADER_BYTES), 0)

    async def _refresh_device(self) -> None:
        """When no request came lately, re-time a little of the device's work (a few ms a
        second): conv1 and the branch on a sample (the branch alone when it attaches after
        block K), and one float block in each executor
        it is loaded in, block after block. So the device's speed stays current while the
        application is idle, and times taken while it was still busy loading do not stick."""
        client = self.client
        if client.transport.clock() - client.last_request_at < self.period_s:
            return
        if client.model is not None and client.model.holds_conv1:
            conv1_ms, branch_ms = time_bundle(client.model, client.images[self.next_seq % len(client.images)])
            client.context.on_device({"conv1_ms": conv1_ms, "branch_ms": branch_ms})
        elif client.model is not None:  # a branch attached after block K: the branch alone
            client.context.on_device({"branch_ms": time_branch(client.model, client.attach_shape)})
        device_blocks = client.device(client.current_plan().variant)
        self._retimed = (self._retimed + 1) % device_blocks.count
        await device_blocks.retime(self._retimed)

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
