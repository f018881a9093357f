"""What the edge does with an offloaded sample: its own blocks, the cloud's, fallbacks.

    INFER (input of block a) ─► blocks [a, b) here ─► blocks [b, N) in the cloud ─► RESULT
                                                   └─ cloud down or slow: [b, N) here

A cloud that times out or fails its health probes a few times in a row is marked down
(edge_server/edge/cloud_client.py): requests then fall back at once, HELLO and PONG say
`cloud: false` so that workers stop planning for it, and a health probe every
CLOUD_PROBE_PERIOD_S marks it up again.

The plan names the model variant (edge_server/blocks/variants.py); both tiers run that one.

Both hops are batched across connections (edge_server/edge/batching.py). Every result says
where its last block ran and, if the plan could not be followed, why; no request is
dropped silently. The runtime also keeps what the planner needs to know about this
side: per-block times here and in the cloud, the edge <-> cloud link, and the queue.
Times are milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import numpy as np
from strata.offload import InferRequest, RequestError, Result, split_transfer
from strata.probes import StepTracker, WindowedMedian, transfer_rate_bps
from strata.wire import WIRE_VERSION

from edge_server.blocks.main_path import MainPath, ModelError
from edge_server.blocks.variants import Variants
from edge_server.config import Settings
from edge_server.edge.batching import Batcher, Computed, in_threads
from edge_server.edge.cloud_client import CloudClient, CloudDown, CloudUnavailable
from edge_server.edge.metrics import EdgeMetrics

log = logging.getLogger("strata.edge")
CLOUD_PROBE_PERIOD_S = 2.0


class CloudLink:
    """What the edge knows of its link to the cloud: RTT from health pings, rates from forwards."""

    def __init__(self) -> None:
        self.rtt = WindowedMedian(window=8)
        self.up = StepTracker()
        self.down = StepTracker()

    def observe(self, details: dict) -> tuple[float, float] | None:
        """Account one forward; return its (edge->cloud, cloud->edge) transfer times, or
        None if the cloud did not say its compute time (Triton does not): the round trip
        then cannot be split, and teaches nothing about the link's rates."""
        if details["compute_ms"] is None:
            return None
        transfer = details["round_trip_ms"] - details["compute_ms"]
        up, down = split_transfer(transfer, details["sent_bytes"], details["received_bytes"], self.rtt.value)
        rtt_s = (self.rtt.value or 0.0) / 2000  # each direction carries half the round trip
        for tracker, size, ms in ((self.up, details["sent_bytes"], up), (self.down, details["received_bytes"], down)):
            rate = transfer_rate_bps(size, ms / 1000, rtt_s)
            if rate is not None:
                tracker.add(rate)
        return up, down

    def describe(self) -> dict:
        return {"rtt_ms": self.rtt.value, "up_bps": self.up.value, "down_bps": self.down.value}


class EdgeRuntime:
    def __init__(self, main_path: MainPath, settings: Settings, cloud: CloudClient | None,
                 metrics: EdgeMetrics) -> None:
        self.main_path, self.cloud = main_path, cloud
        self.variants = Variants(main_path, settings.variant_cache_bytes)
        run_blocks, self._pool = in_threads(self.variants.run, settings.workers)
        wait = settings.max_wait_ms / 1000
        max_batch = settings.max_batch
        if not main_path.manifest.get("batch_independent", True):  # see edge_server/split/prepare.py
            log.warning("model %s: answers depend on batchmates (dynamic quantization); batching off", main_path.name)
            max_batch = 1
        self.blocks = Batcher(run_blocks, settings.workers, max_batch, wait, metrics.batch("blocks"))
        self.forwards = Batcher(self._forward, settings.cloud_concurrency, max_batch, wait, metrics.batch("cloud"))
        self.cloud_block_ms: dict[str, list[float]] = {}  # variant -> the cloud's per-block times
        self.cloud_link = CloudLink()
        self._probe: asyncio.Task | None = None

    async def start(self) -> None:
        """Learn the cloud's per-block costs and start probing the link to it."""
        if self.cloud is None:
            return
        for variant in self.variants.names:
            try:
                self.cloud_block_ms[variant] = await self.cloud.block_ms(variant)
            except CloudUnavailable as exc:
                log.warning("cloud metadata for variant %r unavailable (%s); assuming its blocks cost what ours do",
                            variant, exc)
        self._probe = asyncio.ensure_future(self._probe_cloud())

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.cloud is not None:
            await self.cloud.aclose()

    async def _probe_cloud(self) -> None:
        while True:
            try:
                self.cloud_link.rtt.add(await self.cloud.ping())
            except CloudUnavailable:
                pass
            await asyncio.sleep(CLOUD_PROBE_PERIOD_S)

    async def _forward(self, x: np.ndarray, start: int, stop: int, variant: str) -> tuple[np.ndarray, dict]:
        reply = await self.cloud.infer(x, start, variant)
        return reply.output, {"round_trip_ms": reply.round_trip_ms, "compute_ms": reply.compute_ms,
                              "in_flight": reply.in_flight, "sent_bytes": reply.sent_bytes,
                              "received_bytes": reply.received_bytes}

    @property
    def cloud_up(self) -> bool:
        """Whether workers should plan for the cloud: there is one, and it is not marked down."""
        return self.cloud is not None and not self.cloud.down

    @property
    def cloud_known(self) -> bool:
        """Whether the edge knows where its cloud stands: it has none, or the cloud answered
        once, or it is marked down. Until then the edge is not ready (/health/ready)."""
        return self.cloud is None or self.cloud.answered_once or self.cloud.down

    @property
    def queued(self) -> int:
        """Samples waiting for an edge worker or a cloud forward: the edge's load."""
        return self.blocks.queued + self.forwards.queued

    @property
    def cut_shapes(self) -> dict[str, list[tuple[int, ...]]]:
        """Per variant served, each block's input shape and the logits' (without batch)."""
        return {name: info.cut_shapes for name, info in self.variants.info.items()}

    @property
    def cut_dtypes(self) -> dict[str, list[str]]:
        """Per variant served, each block's input dtype and the logits' (variants keep the model's)."""
        return {name: self.main_path.cut_dtypes for name in self.variants.info}

    def hello(self) -> dict:
        """Capabilities sent to each new connection: the model, its cuts, the costs here and
        beyond, for the unpruned model and for each variant served."""
        manifest = self.main_path.manifest
        base = self.variants.info[""]
        return {
            "wire_version": WIRE_VERSION,
            "model": self.main_path.name,
            "model_version": manifest["version"],
            "blocks": len(self.main_path),
            "cut_shapes": [list(shape) for shape in base.cut_shapes],
            "cut_dtypes": self.main_path.cut_dtypes,
            "edge_block_ms": base.block_ms,
            "cloud": self.cloud_up,
            "cloud_block_ms": self.cloud_block_ms.get("", base.block_ms),
            "cloud_link": self.cloud_link.describe(),
            "edge_queued": self.queued,
            "variants": {name: {"edge_block_ms": info.block_ms, "cloud_block_ms": self.cloud_block_ms.get(name, info.block_ms)}
                         for name, info in self.variants.info.items() if name},
            "refused_variants": self.variants.refused,
        }

    async def infer(self, request: InferRequest) -> Result:
        plan, x, blocks = request.plan, request.tensor, len(self.main_path)
        timing = {"device_compute_ms": request.device_ms, "edge_compute_ms": 0.0, "edge_queue_ms": 0.0}
        if plan.a < plan.b:
            x = self._account(await self._blocks(x, plan.a, plan.b, plan.variant, request), timing)
        tier, fallback = "edge", None
        if plan.b < blocks:
            if self.cloud is None:
                fallback = "no-cloud: ran the cloud's blocks at the edge"
            else:
                try:
                    forwarded = await self.forwards(x, plan.b, blocks, plan.variant)
                except CloudUnavailable as exc:
                    if not isinstance(exc, CloudDown):  # that one was logged once, when the cloud went down
                        log.warning("request %s: %s; finishing at the edge", request.request_id, exc)
                    fallback = f"cloud-unavailable: {exc}"
                else:
                    x, tier, details = forwarded.output, "cloud", forwarded.details
                    timing["edge_queue_ms"] += forwarded.waited_ms
                    timing.update(self._cloud_timing(details), cloud_batch=forwarded.batch)
            if tier == "edge":
                x = self._account(await self._blocks(x, plan.b, blocks, plan.variant, request), timing)
        timing["edge_queued"] = self.queued
        return Result(request.request_id, x, tier, timing, fallback)

    def _cloud_timing(self, details: dict) -> dict:
        """A forward's share of a RESULT's timing: transfer each way and the cloud's compute
        time, or, from a cloud that does not say its compute time, the round trip alone."""
        split = self.cloud_link.observe(details)
        timing = {"cloud_round_trip_ms": details["round_trip_ms"]} if split is None else {
            "edge_to_cloud_ms": split[0], "cloud_compute_ms": details["compute_ms"], "cloud_to_edge_ms": split[1]}
        if details["in_flight"] is not None:
            timing["cloud_in_flight"] = details["in_flight"]
        return timing

    async def _blocks(self, x: np.ndarray, start: int, stop: int, variant: str, request: InferRequest) -> Computed:
        try:
            return await self.blocks(x, start, stop, variant)
        except ModelError as exc:  # the variant's files changed under us: it is refused from now on
            raise RequestError("variant-unavailable", str(exc), request.request_id) from exc

    @staticmethod
    def _account(computed: Computed, timing: dict) -> np.ndarray:
        """Add an edge block call to the timing: model time, and time spent waiting for a thread."""
        run_ms = computed.details["run_ms"]
        timing["edge_compute_ms"] += run_ms
        timing["edge_queue_ms"] += computed.waited_ms + computed.call_ms - run_ms
        timing["batch"] = computed.batch
        return computed.output
