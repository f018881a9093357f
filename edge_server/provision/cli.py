"""`strata provision`: fetch, verify and lay out what the browser worker loads (see
browser_runtime.py), so `strata serve` can serve it with no CDN."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_server.config import Settings
from edge_server.provision import say
from edge_server.provision.browser_runtime import ProvisionError, cold_start_files, provision

SUMMARY = ("Fetch and verify Pyodide, numpy and onnxruntime-web, derive the worker's Python and its memory snapshot, "
           "lay them out for serving.")


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
    entries = cold_start_files(assets)
    size = {key: sum(entry[key] for entry in entries) / 1e6 for key in ("bytes", "gzip_bytes", "br_bytes")}
    snapshot = assets["python"]["snapshot"]
    say(f"ready in {settings.web_dir}: a cold start loads {len(entries)} files, {size['bytes']:.1f} MB raw, "
        f"{size['br_bytes']:.1f} MB brotli, {size['gzip_bytes']:.1f} MB gzip; the snapshot for the next start is "
        f"{snapshot['bytes'] / 1e6:.1f} MB raw, {snapshot['br_bytes'] / 1e6:.1f} MB brotli")
    return 0
