"""Start the cloud tier alone: the Open Inference Protocol (KServe v2) over the model.

It serves one model per cut point, `<model>-from-<k>`, each the suffix of the main path
from block k (docs/scaling.md shows how Triton or KServe can take its place). It is
ready as soon as the blocks load: a suffix runs as the chain of the blocks until its
joined graph, built on its first request, is ready; --joined-bytes bounds those kept.
`strata serve` starts one of these by itself; run it alone to put the cloud on another machine,
and point the edge at it with `strata serve --cloud-url`.
"""

from __future__ import annotations

import argparse

from edge_server.config import Settings
from edge_server.logs import FORMATS, LEVELS

SUMMARY = "Start the cloud tier alone: an Open Inference Protocol server over the model's suffixes."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=Settings.host, help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=Settings.port + 1, help="port to bind (default: %(default)s)")
    parser.add_argument("--models", type=str, default=str(Settings().models_dir),
                        help="folder with manifest.json and the block files (default: %(default)s)")
    parser.add_argument("--joined-bytes", type=int, default=Settings.cloud_joined_bytes, metavar="BYTES",
                        help="suffixes kept joined into one graph each, by their block files' bytes; the others run "
                             "as chains of the blocks (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="threads running models (default: %(default)s)")
    parser.add_argument("--log-level", default="warning", choices=LEVELS, help="server log level (default: %(default)s)")
    parser.add_argument("--log-format", default="text", choices=FORMATS,
                        help="log lines as text, or as one JSON object each (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from strata.cli import CommandError

    from edge_server.blocks.main_path import ModelError
    from edge_server.cloud.server import create_cloud_app, load_suffix_models
    from edge_server.serving import bind, serve

    try:
        settings = Settings(cloud_joined_bytes=args.joined_bytes)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    sock = bind(args.host, args.port)
    try:
        try:
            print(f"Strata cloud: loading the model in {args.models}", flush=True)
            models = load_suffix_models(Path(args.models), settings.cloud_joined_bytes)
        except ModelError as exc:
            raise CommandError(str(exc)) from None
        print(f"Strata cloud: {len(models)} models on http://{args.host}:{args.port}/v2", flush=True)
        app = create_cloud_app(models, token=settings.cloud_token, workers=args.workers,
                               max_body_bytes=settings.cloud_max_body_bytes)
        return serve(app, sock, settings.read_timeout_s, args.log_level, args.log_format)
    finally:
        sock.close()
