"""Put an emulated network link in front of a server: a TCP proxy that shapes traffic.

`strata link --upstream 127.0.0.1:8000 --listen-port 8100 --profile 4g` makes the edge
server on port 8000 reachable on port 8100 as if over 4G. The proxy forwards bytes, so
HTTP and WebSocket pass through unchanged. Profiles (delays are one-way, each direction):

  wifi        50 Mbit/s,                    5 ms
  4g          10 Mbit/s up, 20 Mbit/s down, 40 ms
  3g          1.5 Mbit/s,                 150 ms
  edge-cloud  100 Mbit/s,                  20 ms
  offline     new connections are closed at once, open ones are cut

A control API on 127.0.0.1:--control-port changes the link while it runs:

  curl -X PUT  http://127.0.0.1:8101/profile/3g
  curl -X POST http://127.0.0.1:8101/stall      (then /resume; /cut drops connections)
  curl         http://127.0.0.1:8101/stats

Everything binds 127.0.0.1 by default, and the upstream must be a loopback address
unless --allow-remote is given.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys

from edge_server.link_emulator.proxy import PROFILES

SUMMARY = "Emulate a network link (bandwidth, delay, cuts) in front of a server, on 127.0.0.1:8100."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address the link listens on (default: %(default)s)")
    parser.add_argument("--listen-port", type=int, default=8100, help="port the link listens on (default: %(default)s)")
    parser.add_argument("--upstream", default="127.0.0.1:8000",
                        help="HOST:PORT the link forwards to (default: %(default)s)")
    parser.add_argument("--control-port", type=int,
                        help="port of the control API, always on 127.0.0.1 (default: listen port + 1)")
    parser.add_argument("--profile", default="wifi", choices=list(PROFILES), help="link profile (default: %(default)s)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow an upstream that is not a loopback address")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                        help="log level (default: %(default)s)")


def parse_upstream(text: str, allow_remote: bool = False) -> tuple[str, int]:
    """HOST:PORT (or [IPv6]:PORT) as a (host, port) pair; a remote host only if allowed."""
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--upstream must be HOST:PORT, e.g. 127.0.0.1:8000; got {text!r}")
    if not allow_remote and not _is_loopback(host):
        raise ValueError(f"upstream {host!r} is not a loopback address (127.0.0.1, ::1, localhost); "
                         "pass --allow-remote to forward to another machine")
    return host, int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it could resolve anywhere
        return False


def run(args: argparse.Namespace) -> int:
    import asyncio

    try:
        upstream = parse_upstream(args.upstream, args.allow_remote)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(args, upstream))


async def _serve(args: argparse.Namespace, upstream: tuple[str, int]) -> int:
    import logging

    import uvicorn

    from edge_server.link_emulator.control import create_control_app
    from edge_server.link_emulator.proxy import LinkEmulator

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s: %(message)s")
    emulator = LinkEmulator(upstream, args.profile, listen_host=args.host, listen_port=args.listen_port)
    try:
        await emulator.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.listen_port}: {exc.strerror}", file=sys.stderr)
        return 1
    control_port = args.control_port or emulator.listen_port + 1
    control = uvicorn.Server(uvicorn.Config(create_control_app(emulator), host="127.0.0.1", port=control_port,
                                            log_level=args.log_level))
    print(f"Strata link ({args.profile}): {args.host}:{emulator.listen_port} -> {upstream[0]}:{upstream[1]}; "
          f"control API on http://127.0.0.1:{control_port}/profile", flush=True)
    try:
        await control.serve()
    finally:
        await emulator.close()
    return 0
