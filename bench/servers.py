"""Start real Strata servers on loopback ports, for the tests and the benchmarks alike."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from edge_server.config import REPO


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 20.0) -> None:
    """Return once `url` answers; raise if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise RuntimeError(f"server exited with code {process.returncode}:\n{output}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(f"server did not answer at {url} within {timeout} s")


@contextmanager
def edge_server(*extra_args: str) -> Iterator[str]:
    """Run `strata serve` on a free loopback port; yield its base URL (no trailing slash)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "strata.cli", "serve", "--port", str(port), "--log-level", "warning", *extra_args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url + "/", process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
