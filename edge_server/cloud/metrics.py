"""The cloud's Prometheus metrics, served at GET /metrics (text format), as Triton serves its own.

| metric | labels | what |
|---|---|---|
| strata_cloud_infer_requests_total | model, status | infer requests by model (`""` when the name is not served) and HTTP status |
| strata_cloud_compute_duration_seconds | model | model time of each infer request that ran |
| strata_cloud_batch_size | | samples per infer request that ran |
| strata_cloud_in_flight | | infer requests being computed, now |
| process_* | | this process's CPU time, memory and open files |
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from starlette.routing import Route

from edge_server.edge.metrics import BATCH_BUCKETS, SECONDS_BUCKETS, metrics_route


class CloudMetrics:
    def __init__(self, in_flight: Callable[[], float]) -> None:
        """in_flight: read at each scrape."""
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        self.requests = Counter("strata_cloud_infer_requests", "Infer requests by model and HTTP status",
                                ["model", "status"], registry=registry)
        self.compute = Histogram("strata_cloud_compute_duration_seconds", "Model time per infer request", ["model"],
                                 buckets=SECONDS_BUCKETS, registry=registry)
        self.batches = Histogram("strata_cloud_batch_size", "Samples per infer request", buckets=BATCH_BUCKETS,
                                 registry=registry)
        Gauge("strata_cloud_in_flight", "Infer requests being computed", registry=registry).set_function(in_flight)

    def route(self) -> Route:
        return metrics_route(self.registry)
