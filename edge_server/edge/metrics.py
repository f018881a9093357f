"""The edge's Prometheus metrics, served at GET /metrics in the text exposition format.

Every app gets its own CollectorRegistry, so that several apps in one process (tests)
do not clash. Times are in seconds, as Prometheus wants; the RESULT's timing is in ms.

| metric | labels | what |
|---|---|---|
| strata_edge_requests_total | tier, outcome | INFERs answered: tier `edge` or `cloud` (where the last block ran), outcome `answered` or `fell_back`; refused: tier `none`, outcome the ERROR's code |
| strata_edge_errors_total | code | every ERROR sent, whatever the frame (PINGs and unreadable frames too) |
| strata_edge_request_duration_seconds | tier | a RESULT's `edge_total_ms`: frame in to result ready |
| strata_edge_stage_duration_seconds | stage | a RESULT's timing by stage: `device_compute` (the worker's report), `edge_queue`, `edge_compute`, `cloud_round_trip` (edge to cloud and back, cloud compute included), `cloud_compute`, `edge_overhead` |
| strata_edge_batch_size | hop | samples per model call (`blocks`) or per cloud forward (`cloud`) |
| strata_edge_queued_samples | hop | samples waiting for an edge thread or a cloud forward slot, now |
| strata_edge_connections | | open WebSocket connections |
| strata_edge_connections_refused_total | | connections closed at once with 1013 (the edge was full) |
| strata_device_branch_exits_total | | early exits at the device's branch, as workers report them in PINGs (`exits`) |
| strata_edge_cloud_circuit_open | | 1 while the cloud is marked down (edge_server/edge/cloud_client.py), else 0 |
| strata_edge_draining | | 1 once a graceful shutdown began (edge_server/edge/drain.py) |
| process_* | | this process's CPU time, memory and open files (prometheus_client) |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector,
                               generate_latest)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

if TYPE_CHECKING:
    from edge_server.edge.drain import Drain
    from edge_server.edge.limits import ConnectionLimits
    from edge_server.edge.runtime import EdgeRuntime

# From a sub-millisecond model call on loopback to the cloud's 5 s timeout (Settings).
SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)  # --max-batch is 32 by default
STAGES = {"device_compute_ms": "device_compute", "edge_queue_ms": "edge_queue", "edge_compute_ms": "edge_compute",
          "cloud_compute_ms": "cloud_compute", "edge_overhead_ms": "edge_overhead"}
CLOUD_ROUND_TRIP = ("edge_to_cloud_ms", "cloud_compute_ms", "cloud_to_edge_ms")
TIERS = ("edge", "cloud")  # where a RESULT's last block ran


def metrics_route(registry: CollectorRegistry) -> Route:
    """GET /metrics: the registry in Prometheus' text format."""
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", metrics)


class EdgeMetrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        self.requests = Counter("strata_edge_requests", "INFER frames by where they finished and how",
                                ["tier", "outcome"], registry=registry)
        self.errors = Counter("strata_edge_errors", "ERROR frames sent, by code", ["code"], registry=registry)
        self.duration = Histogram("strata_edge_request_duration_seconds", "From an INFER's arrival to its result",
                                  ["tier"], buckets=SECONDS_BUCKETS, registry=registry)
        self.stages = Histogram("strata_edge_stage_duration_seconds", "Time in each stage of an INFER",
                                ["stage"], buckets=SECONDS_BUCKETS, registry=registry)
        self.batches = Histogram("strata_edge_batch_size", "Samples per model call or cloud forward",
                                 ["hop"], buckets=BATCH_BUCKETS, registry=registry)
        self.queued = Gauge("strata_edge_queued_samples", "Samples waiting for an edge thread or a cloud forward",
                            ["hop"], registry=registry)
        self.connections = Gauge("strata_edge_connections", "Open WebSocket connections", registry=registry)
        self.refused = Counter("strata_edge_connections_refused", "Connections closed at once: the edge was full",
                               registry=registry)
        self.exits = Counter("strata_device_branch_exits", "Early exits at the device's branch, reported by workers",
                             registry=registry)
        self.circuit_open = Gauge("strata_edge_cloud_circuit_open", "1 while the cloud is marked down",
                                  registry=registry)
        self.draining = Gauge("strata_edge_draining", "1 once a graceful shutdown began", registry=registry)
        # The series every RESULT updates, looked up once: an observation costs about 2 us
        # here, and looking its labels up as much again (measured on this 2-core machine).
        self._answered = {(tier, fell_back): self.requests.labels(tier, "fell_back" if fell_back else "answered")
                          for tier in TIERS for fell_back in (False, True)}
        self._durations = {tier: self.duration.labels(tier) for tier in TIERS}
        self._stages = {key: self.stages.labels(stage) for key, stage in STAGES.items()}
        self._cloud_round_trip = self.stages.labels("cloud_round_trip")

    def route(self) -> Route:
        return metrics_route(self.registry)

    def watch(self, runtime: EdgeRuntime, limits: ConnectionLimits, drain: Drain) -> None:
        """Read the gauges from these at each scrape."""
        self.queued.labels("blocks").set_function(lambda: runtime.blocks.queued)
        self.queued.labels("cloud").set_function(lambda: runtime.forwards.queued)
        self.connections.set_function(lambda: limits.connections)
        self.circuit_open.set_function(lambda: runtime.cloud is not None and runtime.cloud.down)
        self.draining.set_function(lambda: drain.draining)

    def batch(self, hop: str) -> Callable[[float], None]:
        """What a Batcher calls with the samples of each call it makes."""
        return self.batches.labels(hop).observe

    def result(self, header: dict) -> None:
        """Count a RESULT frame's header: its tier, whether it fell back, its timing."""
        tier, timing = header["tier"], header["timing"]
        self._answered[tier, header["fallback"] is not None].inc()
        self._durations[tier].observe(timing["edge_total_ms"] / 1000)
        for key, series in self._stages.items():
            if key in timing:
                series.observe(timing[key] / 1000)
        if all(key in timing for key in CLOUD_ROUND_TRIP):
            self._cloud_round_trip.observe(sum(timing[key] for key in CLOUD_ROUND_TRIP) / 1000)

    def error(self, code: str, infer: bool) -> None:
        """Count an ERROR frame; `infer`: it answers an INFER, which counts as a request too."""
        self.errors.labels(code).inc()
        if infer:
            self.requests.labels("none", code).inc()
