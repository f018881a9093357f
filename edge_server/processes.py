"""Helper servers started by another process: wait until one answers over HTTP.

`strata serve` starts the cloud and the link emulator this way, and the tests and
benchmarks (testing/servers.py) start whole servers the same way.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 20.0, log: Path | None = None) -> None:
    """Return once `url` answers; raise if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text()[-3000:] if log else ""
            raise RuntimeError(f"server exited with code {process.returncode}:\n{output}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(f"server did not answer at {url} within {timeout} s")
