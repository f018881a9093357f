"""Start Strata's servers: the edge (page, Pyodide runtime, model, WebSocket) and the cloud.

By default this starts two processes: the cloud (`strata cloud`) on port+1, then the
edge on the port given, which forwards to it. --emulate PROFILE (demo mode) also puts
the link emulator (`strata link`) on the port given, in front of the edge, and lets
the page switch its profile. With --cloud-url (or STRATA_CLOUD_URL)
the edge uses that cloud instead and starts none; with --no-cloud it has no cloud and
runs every block itself.

Both bind 127.0.0.1 by default, so nothing outside this machine can reach them; pass
--host 0.0.0.0 to serve a phone on your network. Run `make provision` (or
`strata provision`) first: the edge refuses to start without the Pyodide files.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import signal
import subprocess
import sys

from edge_server.config import Settings
from edge_server.link_emulator.proxy import PROFILES
from edge_server.processes import wait_for_http

SUMMARY = "Start the edge server and the cloud (two processes) on 127.0.0.1:8000 and :8001."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Settings()
    parser.add_argument("--host", default=defaults.host, help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=defaults.port, help="edge port (default: %(default)s)")
    cloud = parser.add_mutually_exclusive_group()
    cloud.add_argument("--cloud-url", default=defaults.cloud_url,
                       help="use this Open Inference Protocol server as the cloud instead of starting one "
                            "(default: $STRATA_CLOUD_URL, else start our own)")
    cloud.add_argument("--no-cloud", action="store_true", help="no cloud: the edge runs every block itself")
    parser.add_argument("--cloud-port", type=int, help="port of the cloud we start (default: edge port + 1)")
    parser.add_argument("--emulate", choices=list(PROFILES), metavar="PROFILE",
                        help="demo mode: serve through the link emulator in this profile "
                             f"({', '.join(PROFILES)}); the page can switch it (edge on port + 2)")
    parser.add_argument("--max-batch", type=int, default=defaults.max_batch,
                        help="largest dynamic batch at the edge; 1 turns batching off (default: %(default)s)")
    parser.add_argument("--max-wait-ms", type=float, default=defaults.max_wait_ms,
                        help="hold a lone request this long for company when batching (default: %(default)s)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="server log level (default: %(default)s)")


def _die_with_parent() -> None:
    """In the child: get SIGTERM when `strata serve` dies, however it dies (Linux).

    uvicorn re-raises SIGTERM after its graceful shutdown, so code after uvicorn.run()
    never runs on a plain `kill`; without this, the cloud would outlive the edge.
    """
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: the finally below still stops helpers on Ctrl-C


def _start(command: list[str], ready_url: str) -> subprocess.Popen:
    """Start a helper process (the cloud, the link emulator) and wait until it answers."""
    process = subprocess.Popen([sys.executable, "-m", "strata.cli", *command], preexec_fn=_die_with_parent)
    wait_for_http(ready_url, process, timeout=120)
    return process


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from edge_server.edge.app import create_app
    from edge_server.provision.browser_runtime import ProvisionError, provision

    settings = Settings(host=args.host, port=args.port, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                        cloud_url=None if args.no_cloud else args.cloud_url)
    if not settings.assets_file.is_file():
        print(f"error: {settings.assets_file} is missing: the Pyodide files are not provisioned.\n"
              "Run `make provision` (or `strata provision`) first.", file=sys.stderr)
        return 1
    try:
        provision(settings)  # fast when all is there: re-verifies the files, rebuilds the strata wheel if the code changed
    except ProvisionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    quiet = "warning" if args.log_level == "info" else args.log_level
    helpers = []
    if settings.cloud_url is None and not args.no_cloud:
        port = args.cloud_port or settings.port + 1
        helpers.append(_start(["cloud", "--host", "127.0.0.1", "--port", str(port), "--models",
                               str(settings.models_dir), "--log-level", quiet],
                              f"http://127.0.0.1:{port}/v2/health/ready"))
        settings = dataclasses.replace(settings, cloud_url=f"http://127.0.0.1:{port}")
    public = f"http://{settings.host}:{settings.port}/"
    if args.emulate:  # the emulator takes the public port; the edge moves behind it
        edge_port, control_port = settings.port + 2, settings.port + 3
        helpers.append(_start(["link", "--host", settings.host, "--listen-port", str(settings.port),
                               "--upstream", f"127.0.0.1:{edge_port}", "--control-port", str(control_port),
                               "--profile", args.emulate, "--log-level", quiet],
                              f"http://127.0.0.1:{control_port}/profile"))
        settings = dataclasses.replace(settings, host="127.0.0.1", port=edge_port,
                                       link_control_url=f"http://127.0.0.1:{control_port}")
    try:
        print(f"Strata edge server: open {public} (cloud: {settings.cloud_url or 'none'}"
              f"{f', link emulated: {args.emulate}' if args.emulate else ''})", flush=True)
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_level=args.log_level,
            ws="websockets-sansio",
            ws_per_message_deflate=False,  # deflate made a 64 KiB round trip 25x slower on loopback
            ws_max_size=settings.max_frame_bytes * 2,  # larger frames still reach the session, which answers with an error
        )
    finally:
        for helper in helpers:
            helper.terminate()
            helper.wait(timeout=10)
    return 0
