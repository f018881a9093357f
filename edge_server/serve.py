"""Start the edge server: the page, the worker's runtime files and the WebSocket.

It binds 127.0.0.1 by default, so nothing outside this machine can reach it; pass
--host 0.0.0.0 to serve a phone on your network. Run `make provision` (or
`strata provision`) first: the server refuses to start without the Pyodide files.
"""

from __future__ import annotations

import argparse
import sys

from edge_server.config import Settings

SUMMARY = "Start the edge server (page, Pyodide runtime, WebSocket) on 127.0.0.1:8000."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=Settings.host, help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=Settings.port, help="port to bind (default: %(default)s)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="server log level (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from edge_server.app import create_app

    settings = Settings(host=args.host, port=args.port)
    if not settings.assets_file.is_file():
        print(f"error: {settings.assets_file} is missing: the Pyodide files are not provisioned.\n"
              "Run `make provision` (or `strata provision`) first.", file=sys.stderr)
        return 1
    print(f"Strata edge server: open http://{settings.host}:{settings.port}/", flush=True)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        ws="websockets",
        ws_per_message_deflate=False,  # deflate made a 64 KiB round trip 25x slower on loopback
        ws_max_size=settings.max_frame_bytes * 2,  # larger frames still reach the session, which answers with an error
    )
    return 0
