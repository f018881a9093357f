"""Start real Strata servers on loopback ports, for the tests and the benchmarks alike."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge_server.config import REPO
from edge_server.processes import stop, wait_for_http


def rss_mb(process: subprocess.Popen, peak: bool = False) -> float:
    """A running process's resident memory now, or its peak since it started (`peak`),
    in MB (Linux: VmRSS or VmHWM in /proc/PID/status)."""
    key = "VmHWM:" if peak else "VmRSS:"
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {process.pid}: has it exited?")


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _process(command: str, ready_path: str, *args: str, port: int | None = None,
             ready_port: int | None = None, env: dict[str, str] | None = None, https: bool = False,
             log: Path | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run `strata COMMAND`, by default with --port set to a free port; yield its URL once
    `ready_path` answers (on `ready_port` if given), and stop it afterwards. `env` adds
    to this process's environment; `https`: it serves TLS (readiness is checked without
    verifying the certificate); `log`: keep its output there rather than in a temporary file."""
    if port is None:
        port = free_port()
        args = ("--port", str(port), *args)
    scheme = "https" if https else "http"
    with (open(log, "w+") if log else tempfile.NamedTemporaryFile("w+", prefix=f"strata-{command}-", suffix=".log")) \
            as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "strata.cli", command, "--log-level", "warning", *args],
            cwd=REPO, stdout=output, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})},
        )
        url = f"{scheme}://127.0.0.1:{port}"
        try:
            wait_for_http(f"{scheme}://127.0.0.1:{ready_port or port}{ready_path}", process, timeout=120,
                          log=Path(output.name), verify=not https)
            yield url, process
        finally:
            stop(process)


@contextmanager
def edge_process(*args: str, models: Path | None = None, https: bool = False, log: Path | None = None,
                 env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run `strata serve` (with its own cloud, unless args say otherwise) on a free
    loopback port; yield its base URL, without a trailing slash, and its process.
    `models`: serve this model folder (STRATA_MODELS_DIR) instead of models/; `https`:
    args make it serve TLS; `log`: where its output goes; `env`: more variables for it."""
    env = {**({"STRATA_MODELS_DIR": str(models)} if models else {}), **(env or {})}
    if not {"--cloud-url", "--no-cloud", "--cloud-port"} & set(args):
        args = ("--cloud-port", str(free_port()), *args)  # not port + 1, which another test may hold
    with _process("serve", "/", *args, env=env, https=https, log=log) as running:
        yield running


@contextmanager
def cloud_process(*args: str, models: Path | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run `strata cloud` alone on a free loopback port; yield its URL and process.
    `models`: serve this model folder instead of models/."""
    with _process("cloud", "/v2/health/ready", *args, *(("--models", str(models)) if models else ())) as running:
        yield running


@contextmanager
def link_process(upstream: str, profile: str = "wifi") -> Iterator[tuple[str, str]]:
    """Run `strata link` (the link emulator) in front of `upstream` (a base URL); yield the
    URL to use instead and the URL of its control API."""
    listen, control = free_port(), free_port()
    target = upstream.removeprefix("http://")
    with _process("link", "/profile", "--listen-port", str(listen), "--upstream", target,
                  "--control-port", str(control), "--profile", profile, port=listen, ready_port=control) as (url, _):
        yield url, f"http://127.0.0.1:{control}"


@contextmanager
def emulated_tiers(models: Path | None = None) -> Iterator[tuple[str, str, str]]:
    """The cloud behind an `edge-cloud` link emulator, the edge forwarding through it, and a
    second emulator in front of the edge (starting at `wifi`), as the benchmarks use them.
    Yields the URL the browser loads (through the emulator), its control API, and the
    edge's own URL."""
    with cloud_process(models=models) as (cloud, _), link_process(cloud, "edge-cloud") as (cloud_link, _), \
            edge_process("--cloud-url", cloud_link, models=models) as (edge, _), \
            link_process(edge, "wifi") as (url, control):
        yield url, control, edge
