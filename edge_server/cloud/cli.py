"""Start the cloud tier alone: the Open Inference Protocol (KServe v2) over the model.

It serves one model per cut point, `<model>-from-<k>`, each the suffix of the main path
from block k (docs/scaling.md shows how Triton or KServe can take its place). `strata
serve` starts one of these by itself; run it alone to put the cloud on another machine,
and point the edge at it with `strata serve --cloud-url`.
"""

from __future__ import annotations

import argparse

from edge_server.config import Settings

SUMMARY = "Start the cloud tier alone: an Open Inference Protocol server over the model's suffixes."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=Settings.host, help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=Settings.port + 1, help="port to bind (default: %(default)s)")
    parser.add_argument("--models", type=str, default=str(Settings().models_dir),
                        help="folder with manifest.json and the block files (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="threads running models (default: %(default)s)")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                        help="server log level (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import uvicorn

    from edge_server.cloud.server import create_cloud_app, load_suffix_models

    settings = Settings()
    models = load_suffix_models(Path(args.models))
    print(f"Strata cloud: {len(models)} models on http://{args.host}:{args.port}/v2", flush=True)
    app = create_cloud_app(models, token=settings.cloud_token, workers=args.workers)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
