"""Load on the edge: N concurrent browser-like Python clients, with and without batching.

Each client is Strata's own client (strata.client, the page's, over CPython's transport)
after its device's share: it holds conv1's output for real test images (computed with
the same shared code) and offloads it over its own WebSocket, one request at a time
(closed loop), for a fixed number of requests, with the plan fixed and no probes. Every
request must come back from the edge (finished there if the cloud failed): an error, or
an answer the device had to give itself, fails the run.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from strata.client import Client
from strata.client.websockets_transport import WebSocketsTransport
from strata.executor import load_browser_model
from strata.offload import RequestError
from strata.plan import Plan, default_plan

from edge_server.config import Settings
from testing.servers import cloud_process, edge_process


REPLY_TIMEOUT_S = 60.0  # a client here waits for the edge as long as it takes: it measures the edge


@dataclass
class LoadResult:
    clients: int
    batching: bool
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    edge_overhead_ms: list[float]
    batches: list[int] = field(default_factory=list)  # samples in the edge's model call of each answer
    cloud_batches: list[int] = field(default_factory=list)  # samples in the cloud request of each, if any

    def summary(self) -> dict:
        lat = sorted(self.latencies_ms)
        pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")  # noqa: E731
        return {"clients": self.clients, "batching": self.batching, "requests": self.requests, "errors": self.errors,
                "throughput_rps": self.requests / self.seconds, "p50_ms": pick(0.5), "p99_ms": pick(0.99),
                "edge_overhead_p50_ms": statistics.median(self.edge_overhead_ms) if self.edge_overhead_ms else None,
                "edge_batch_mean": statistics.fmean(self.batches) if self.batches else None,
                "cloud_batch_mean": statistics.fmean(self.cloud_batches) if self.cloud_batches else None}


def conv1_outputs(models_dir: Path, count: int) -> np.ndarray:
    """conv1's output for `count` shipped test images: what a worker offloads."""
    manifest = json.loads((models_dir / "manifest.json").read_text())
    bundle = manifest["browser_bundle"]["file"]
    model = load_browser_model(manifest, {bundle: (models_dir / bundle).read_bytes()})
    with np.load(models_dir / "samples.npz") as shipped:
        return model.conv1(shipped["images"][:count])


async def _client(client: Client, features: np.ndarray, plan: Plan, requests: int, first_id: int,
                  result: LoadResult) -> None:
    for i in range(requests):
        x = features[(first_id + i) % len(features)]
        start = time.perf_counter()
        try:
            answer = (await client.offload(x, plan)).answer
        except (ConnectionError, asyncio.TimeoutError, RequestError):
            answer = None
        elapsed = (time.perf_counter() - start) * 1000
        if answer is None or answer.tier == "browser":  # the edge did not answer: the device fell back
            result.errors += 1
            continue
        result.latencies_ms.append(elapsed)
        result.edge_overhead_ms.append(answer.timing["edge_overhead_ms"])
        if "batch" in answer.timing:
            result.batches.append(answer.timing["batch"])
        if "cloud_batch" in answer.timing:
            result.cloud_batches.append(answer.timing["cloud_batch"])


async def run_load(url: str, features: np.ndarray, plan: Plan, clients: int, requests: int, batching: bool) -> LoadResult:
    """`clients` Strata clients (strata.client, each with its own WebSocket, probes off,
    the plan fixed) offload conv1's outputs, one request at a time each."""
    result = LoadResult(clients, batching, clients * requests, 0, 0.0, [], [])
    transport = WebSocketsTransport(url)
    first = await Client.load(transport, url)
    fleet = [first] + [Client(transport, url, first.manifest, first.model, (first.images, first.labels),
                              first.ort_assets, first.profile) for _ in range(clients - 1)]
    try:
        for client in fleet:
            client.link.reply_timeout_s = REPLY_TIMEOUT_S
            client.start(probes=False)
        await asyncio.wait_for(asyncio.gather(*(client.link.ready.wait() for client in fleet)), timeout=60)
        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(
            _client(client, features, plan, requests, c * requests, result) for c, client in enumerate(fleet))),
            timeout=600)
        result.seconds = time.perf_counter() - start
    finally:
        await asyncio.gather(*(client.close() for client in fleet))
        await transport.aclose()
    return result


def measure(clients_list: list[int], requests_per_client: int, plan: Plan | None = None) -> list[dict]:
    """Throughput and latency for each client count, with and without dynamic batching."""
    settings = Settings()
    features = conv1_outputs(settings.models_dir, 256)
    rows = []
    with ExitStack() as stack:
        cloud, _ = stack.enter_context(cloud_process())
        for batching in (False, True):
            edge, _ = stack.enter_context(edge_process("--cloud-url", cloud, "--max-batch", "32" if batching else "1"))
            blocks = len(json.loads((settings.models_dir / "manifest.json").read_text())["blocks"])
            chosen = plan or default_plan(blocks)
            for clients in clients_list:
                requests = max(4, requests_per_client // max(1, clients // 8))
                result = asyncio.run(run_load(edge.replace("http", "ws") + "/ws", features, chosen, clients,
                                              requests, batching))
                rows.append(result.summary())
                row = rows[-1]
                print(f"  {'batching' if batching else 'no batching':>11}, {clients:3d} clients: "
                      f"{row['throughput_rps']:7.1f} req/s, p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, "
                      f"errors {row['errors']}", flush=True)
    return rows


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for batching, style in ((False, "o--"), (True, "s-")):
        mine = [r for r in rows if r["batching"] is batching]
        label = "dynamic batching" if batching else "no batching"
        left.plot([r["clients"] for r in mine], [r["throughput_rps"] for r in mine], style, label=label)
        right.plot([r["clients"] for r in mine], [r["p99_ms"] for r in mine], style, label=label)
    for axis, title in ((left, "throughput (requests/s)"), (right, "p99 latency (ms)")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent clients")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle("Edge under load: conv1 output in, logits out (edge and cloud on this machine)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(clients: list[int], requests: int, runs: int, out: Path) -> int:
    """Run the load grid `runs` times; report per-cell medians, JSON, markdown and a plot."""
    print(f"Load benchmark: clients {clients}, {runs} runs", flush=True)
    trials = [measure(clients, requests) for _ in range(runs)]
    rows = []
    for cell in zip(*trials):
        row = dict(cell[0])
        for key in ("throughput_rps", "p50_ms", "p99_ms", "edge_overhead_p50_ms"):
            row[key] = statistics.median(r[key] for r in cell)
        row["errors"] = sum(r["errors"] for r in cell)
        rows.append(row)
    lines = ["| clients | batching | throughput (req/s) | p50 (ms) | p99 (ms) | edge overhead p50 (ms) | errors |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['clients']} | {'on' if r['batching'] else 'off'} | {r['throughput_rps']:.0f} | {r['p50_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {r['edge_overhead_p50_ms']:.2f} | {r['errors']} |" for r in rows]
    gains = []
    for n in clients:
        off, on = (next(r for r in rows if r["clients"] == n and r["batching"] is b) for b in (False, True))
        gains.append(f"{n} clients: {on['throughput_rps'] / off['throughput_rps']:.2f}x")
    table = "\n".join(lines) + "\n\nThroughput gain of dynamic batching: " + ", ".join(gains) + "\n"
    print("\n" + table)
    (out / "load.json").write_text(json.dumps({"runs": runs, "rows": rows, "trials": trials}, indent=1))
    (out / "load.md").write_text(table)
    _plot(rows, out / "load.png")
    print(f"wrote {out / 'load.json'}, load.md and load.png")
    return 0 if all(r["errors"] == 0 for r in rows) else 1
