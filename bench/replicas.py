"""Edge replicas behind nginx: throughput at N clients (64 by default), one edge against two.

The load of bench/load.py (Strata clients, each offloading conv1's output in a closed
loop, the default plan: the edge's blocks, then the cloud's) against three setups that
share one `strata cloud`:

    direct     one edge, no proxy
    1 edge     the same edge behind nginx (deploy/nginx.conf.template)
    2 edges    that edge and a second one behind nginx

The setups take turns, `runs` rounds; each figure is the median over the rounds. With
them: the mean samples per model call at the edge and per cloud request, which show
what dynamic batching does with replicas (each edge batches only its own connections).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
from contextlib import ExitStack
from pathlib import Path

from strata.plan import default_plan

from bench.load import conv1_outputs, run_load
from edge_server.config import Settings
from testing.proxy import nginx_process
from testing.servers import cloud_process, edge_process

SETUPS = ("direct", "1 edge", "2 edges")


def measure(clients: int, requests: int, runs: int) -> dict[str, list[dict]]:
    """Each setup's load results, one per round."""
    settings = Settings()
    features = conv1_outputs(settings.models_dir, 256)
    plan = default_plan(len(json.loads((settings.models_dir / "manifest.json").read_text())["blocks"]))
    trials: dict[str, list[dict]] = {name: [] for name in SETUPS}
    with ExitStack() as stack:
        cloud, _ = stack.enter_context(cloud_process())
        edges = [stack.enter_context(edge_process("--cloud-url", cloud))[0] for _ in range(2)]
        urls = {"direct": edges[0], "1 edge": stack.enter_context(nginx_process(edges[:1]))[0],
                "2 edges": stack.enter_context(nginx_process(edges))[0]}
        for round_ in range(runs):
            for name, url in urls.items():
                result = asyncio.run(run_load(url.replace("http://", "ws://") + "/ws", features, plan, clients,
                                              requests, batching=True))
                row = {"setup": name, **result.summary()}
                trials[name].append(row)
                print(f"  round {round_ + 1}, {name:>7}: {row['throughput_rps']:7.1f} req/s, "
                      f"p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, edge batch "
                      f"{row['edge_batch_mean']:.1f}, cloud batch {row['cloud_batch_mean']:.1f}, "
                      f"errors {row['errors']}", flush=True)
    return trials


def main(clients: int, requests: int, runs: int, out: Path) -> int:
    """Run the rounds; write replicas.json and replicas.md under `out`; fail on any error."""
    print(f"Replicas benchmark: {clients} clients x {requests} requests, {runs} rounds, "
          f"{os.cpu_count()} CPUs for everything", flush=True)
    trials = measure(clients, requests, runs)
    rows = []
    for name in SETUPS:
        cell = trials[name]
        row = {"setup": name, "clients": clients, "errors": sum(r["errors"] for r in cell)}
        for key in ("throughput_rps", "p50_ms", "p99_ms", "edge_batch_mean", "cloud_batch_mean"):
            row[key] = statistics.median(r[key] for r in cell)
        rows.append(row)
    lines = [f"| setup ({clients} clients) | throughput (req/s) | p50 (ms) | p99 (ms) | samples per edge call | "
             "samples per cloud request | errors |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['setup']} | {r['throughput_rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
              f"{r['edge_batch_mean']:.1f} | {r['cloud_batch_mean']:.1f} | {r['errors']} |" for r in rows]
    one, two = rows[1]["throughput_rps"], rows[2]["throughput_rps"]
    table = "\n".join(lines) + f"\n\nTwo edges behind nginx against one: {two / one:.2f}x the throughput " \
                               f"(medians of {runs} rounds, {os.cpu_count()} CPUs shared by every process).\n"
    print("\n" + table)
    (out / "replicas.json").write_text(json.dumps({"runs": runs, "rows": rows, "trials": trials}, indent=1))
    (out / "replicas.md").write_text(table)
    print(f"wrote {out / 'replicas.json'} and replicas.md")
    return 0 if all(r["errors"] == 0 for r in rows) else 1
