"""`strata provision`: fetch, verify and lay out what the browser worker loads (see
browser_runtime.py), so `strata serve` can serve it with no CDN."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_server.config import Settings
from edge_server.provision.browser_runtime import ProvisionError, provision, say

SUMMARY = "Fetch and verify Pyodide and numpy, build the strata wheel, lay them out for serving."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--web-dir", type=Path, default=Settings.web_dir,
                        help="where to lay out the served files (default: %(default)s)")
    parser.add_argument("--cache-dir", type=Path, default=Settings.cache_dir,
                        help="where downloads are kept between runs (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    settings = Settings(web_dir=args.web_dir, cache_dir=args.cache_dir)
    try:
        assets = provision(settings)
    except ProvisionError as exc:
        print(f"[provision] error: {exc}", file=sys.stderr)
        return 1
    entries = [*assets["files"], assets["strata_wheel"]]
    raw = sum(entry["bytes"] for entry in entries)
    compressed = sum(entry["gzip_bytes"] for entry in entries)
    say(f"ready in {settings.web_dir}: {len(entries)} files, {raw / 1e6:.1f} MB raw, {compressed / 1e6:.1f} MB gzipped")
    return 0
