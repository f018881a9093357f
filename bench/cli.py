"""Benchmarks, each reporting medians over several runs.

  startup   cold and warm-cache time from page load to the worker's ready state,
            and the bytes the browser downloads (compressed and raw)
"""

from __future__ import annotations

import argparse

SUMMARY = "Run a benchmark (startup) in real headless Chromium and print medians."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("benchmark", choices=["startup"], help="which benchmark to run")
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (default: %(default)s)")
    parser.add_argument("--json", dest="json_path", help="also write the results as JSON to this file")


def run(args: argparse.Namespace) -> int:
    from bench import startup

    return startup.main(runs=args.runs, json_path=args.json_path)
