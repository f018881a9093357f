"""Start Strata's servers: the edge (page, Pyodide runtime, model, WebSocket) and the cloud.

By default this starts two processes: the cloud (`strata cloud`) on port+1, then the
edge on the port given, which forwards to it. --emulate PROFILE (demo mode) also puts
the link emulator (`strata link`) on the port given, in front of the edge, and lets
the page switch its profile. With --cloud-url (or STRATA_CLOUD_URL)
the edge uses that cloud instead and starts none; with --no-cloud it has no cloud and
runs every block itself.

Both bind 127.0.0.1 by default, so nothing outside this machine can reach them; pass
--host 0.0.0.0 --allowed-host ADDRESS (the address the phone opens) to serve a phone on
your network, and --tls-cert/--tls-key (or --tls-self-signed, to try it out) so that the
page is a secure context there: a phone's browser gives a page served over plain http
no camera and no cross-origin isolation. Run `make provision` (or `strata provision`)
first: the edge refuses to start without the Pyodide files.

Every port is bound (or checked free) before anything is printed or started, so a taken
port is a one-line error. The helpers (the cloud, the link emulator) are supervised: one
that exits is restarted, with a backoff, and said so on stderr. On SIGTERM the edge
stops accepting, answers the frames in flight (new ones get ERROR shutting-down), then
exits (edge_server/edge/drain.py).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from strata.cli import CommandError

from edge_server.config import Settings
from edge_server.link_emulator.proxy import PROFILES
from edge_server.logs import FORMATS, LEVELS
from edge_server.processes import Supervised, load_timeout_s
from edge_server.serving import bind, port_free, serve

SUMMARY = "Start the edge server and the cloud (two processes) on 127.0.0.1:8000 and :8001."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Settings()
    parser.add_argument("--host", default=defaults.host, help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=defaults.port, help="edge port (default: %(default)s)")
    parser.add_argument("--allowed-host", action="append", default=list(defaults.allowed_hosts), metavar="NAME",
                        help="a host name or address browsers use to reach this edge, besides 127.0.0.1, localhost "
                             "and --host (repeat for more; default: $STRATA_ALLOWED_HOSTS). Requests naming any "
                             "other Host are refused, against DNS rebinding")
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
                        help="largest dynamic batch at the edge, and most samples one frame may carry; "
                             "1 turns batching off (default: %(default)s)")
    parser.add_argument("--max-wait-ms", type=float, default=defaults.max_wait_ms,
                        help="hold a lone request this long for company when batching (default: %(default)s)")
    parser.add_argument("--max-frame-bytes", type=int, default=defaults.max_frame_bytes, metavar="BYTES",
                        help="largest WebSocket frame the edge accepts; HELLO tells clients, whose planner then "
                             "sends no larger INFER (default: %(default)s)")
    parser.add_argument("--max-connections", type=int, default=defaults.max_connections,
                        help="WebSocket connections served at once; more are told to try again later "
                             "(default: %(default)s)")
    parser.add_argument("--read-timeout", type=float, default=defaults.read_timeout_s, metavar="SECONDS",
                        help="close a connection whose request headers, or a WebSocket whose answer to a keepalive "
                             "ping, take longer than this (default: %(default)s)")
    parser.add_argument("--shutdown-timeout", type=float, default=defaults.shutdown_timeout_s, metavar="SECONDS",
                        help="on SIGTERM, wait at most this long for the frames in flight to be answered "
                             "(default: %(default)s)")
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--tls-cert", metavar="PEM", help="serve https and wss with this certificate chain "
                                                       "(needs --tls-key)")
    tls.add_argument("--tls-self-signed", action="store_true",
                     help="serve https with a self-signed certificate made for 127.0.0.1, localhost, --host and "
                          "--allowed-host (kept in build/tls/); prints its SHA-256 fingerprint")
    parser.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    parser.add_argument("--log-level", default="info", choices=LEVELS,
                        help="server log level; debug logs one line per request (default: %(default)s)")
    parser.add_argument("--log-format", default="text", choices=FORMATS,
                        help="log lines as text, or as one JSON object each for log collectors (default: %(default)s)")


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return Settings(host=args.host, port=args.port, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                        max_frame_bytes=args.max_frame_bytes,
                        max_connections=args.max_connections, read_timeout_s=args.read_timeout,
                        allowed_hosts=tuple(args.allowed_host), cloud_url=None if args.no_cloud else args.cloud_url,
                        shutdown_timeout_s=args.shutdown_timeout,
                        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
                        tls_key=Path(args.tls_key) if args.tls_key else None)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _check_models(settings: Settings) -> None:
    from edge_server.blocks.main_path import ModelError, load_manifest

    try:
        load_manifest(settings.models_dir)
    except ModelError as exc:
        raise CommandError(f"{exc} (the model folder is $STRATA_MODELS_DIR, else models/)") from None


def _tls(settings: Settings, self_signed: bool) -> tuple[Settings, str | None]:
    """The settings with the certificate to serve, made if asked (self_signed); and what
    to print about it (None: plain http). CommandError if the certificate cannot serve."""
    from edge_server import tls
    from edge_server.edge.app import allowed_hosts

    if self_signed:
        names = allowed_hosts(settings)
        cert, key = tls.self_signed(names, settings.tls_dir)
        settings = dataclasses.replace(settings, tls_cert=cert, tls_key=key)
        about = (f"TLS: a self-signed certificate for {', '.join(names)} ({cert}). Browsers warn about it: accept "
                 f"it only if the certificate they show has this SHA-256 fingerprint:\n  ")
    elif settings.tls_cert is None:
        return settings, None
    else:
        about = f"TLS: certificate {settings.tls_cert}, SHA-256 fingerprint "
    try:
        return settings, about + tls.check_pair(settings.tls_cert, settings.tls_key)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from edge_server.edge.app import WILDCARDS, create_app
    from edge_server.provision.browser_runtime import ProvisionError, provision

    settings = _settings(args)
    if not settings.assets_file.is_file():
        raise CommandError(f"{settings.assets_file} is missing: the Pyodide files are not provisioned.\n"
                           "Run `make provision` (or `strata provision`) first.")
    try:
        provision(settings)  # fast when all is there: re-verifies the files, rebuilds the strata wheel if the code changed
    except ProvisionError as exc:
        raise CommandError(str(exc)) from None
    _check_models(settings)
    settings, tls_note = _tls(settings, args.tls_self_signed)
    quiet = "warning" if args.log_level == "info" else args.log_level
    public = f"{'https' if tls_note else 'http'}://{settings.host}:{settings.port}/"
    if args.emulate:  # the emulator takes the public port; the edge moves behind it
        edge_port, control_port = settings.port + 2, settings.port + 3
        port_free(settings.host, settings.port)
        port_free("127.0.0.1", control_port)
        public_host = () if settings.host in WILDCARDS else (settings.host,)  # browsers still name it in Host
        settings = dataclasses.replace(settings, host="127.0.0.1", port=edge_port,
                                       allowed_hosts=(*settings.allowed_hosts, *public_host),
                                       link_control_url=f"http://127.0.0.1:{control_port}")
    sock = bind(settings.host, settings.port)  # before anything starts: a taken port is an error, not a log line
    helpers: list[Supervised] = []
    try:
        if settings.cloud_url is None and not args.no_cloud:
            port = args.cloud_port or args.port + 1
            port_free("127.0.0.1", port)  # or the edge would forward to whatever listens there
            helpers.append(Supervised("the cloud", ["cloud", "--host", "127.0.0.1", "--port", str(port), "--models",
                                                    str(settings.models_dir), "--log-level", quiet,
                                                    "--log-format", args.log_format],
                                      f"http://127.0.0.1:{port}/v2/health/ready", load_timeout_s(settings.models_dir)))
            settings = dataclasses.replace(settings, cloud_url=f"http://127.0.0.1:{port}")
        if args.emulate:
            helpers.append(Supervised("the link emulator", [
                "link", "--host", args.host, "--listen-port", str(args.port), "--upstream",
                f"127.0.0.1:{settings.port}", "--control-port", str(settings.port + 1), "--profile", args.emulate,
                "--log-level", quiet], f"http://127.0.0.1:{settings.port + 1}/profile"))
        print(f"Strata edge server: open {public} (cloud: {settings.cloud_url or 'none'}"
              f"{f', link emulated: {args.emulate}' if args.emulate else ''})", flush=True)
        if tls_note:
            print(tls_note, flush=True)
        if args.host in WILDCARDS and not settings.allowed_hosts:
            print("note: browsers may reach it as 127.0.0.1 or localhost only: add --allowed-host with the "
                  "address (or name) other devices open", flush=True)
        app = create_app(settings)
        return serve(
            app, sock, settings.read_timeout_s, args.log_level, args.log_format, app.state.drain,
            ws_per_message_deflate=False,  # deflate made a 64 KiB round trip 25x slower on loopback
            ws_max_size=settings.max_frame_bytes * 2,  # larger frames still reach the session, which answers with an error
            ssl_certfile=settings.tls_cert, ssl_keyfile=settings.tls_key,
        )
    finally:
        sock.close()
        for helper in helpers:
            helper.stop()
