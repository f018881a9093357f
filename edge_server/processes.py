"""Helper servers started by another process: wait until one answers over HTTP, and keep
one running.

`strata serve` starts the cloud and the link emulator as Supervised helpers, and the
tests and benchmarks (testing/servers.py) start whole servers with wait_for_http.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from strata.cli import CommandError

log = logging.getLogger("strata.serve")
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # waits before restarts that follow each other
STEADY_S = 60.0  # a helper that ran this long starts the backoff over
PROGRESS_S = 5.0  # how often a helper still starting is said to be
# A helper loading a model gets START_S plus 1 s per LOAD_BYTES_PER_S of the model folder
# to answer. The cloud's start-up grows linearly with the model (edge_server/cloud/
# suffixes.py): measured on a busy 2-core machine, a 40-block 5.2 MB split model was ready
# in 1.1 s and the 7-block model (10 MB with its variants) in 1.3 s, so 1 MB/s leaves a
# wide margin; the 120 s start stays for small models.
START_S = 120.0
LOAD_BYTES_PER_S = 1_000_000


def load_timeout_s(folder: Path) -> float:
    """How long a helper that loads the model in `folder` may take to answer: START_S plus
    1 s per LOAD_BYTES_PER_S of the folder's files (variants included)."""
    size = sum(file.stat().st_size for file in folder.rglob("*") if file.is_file())
    return START_S + size / LOAD_BYTES_PER_S


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 20.0, log: Path | None = None,
                  verify: bool = True, progress: Callable[[float], None] | None = None) -> None:
    """Return once `url` answers and the process still runs; raise if the process dies
    or time runs out. `verify`: check an https server's certificate. `progress` is called
    with the seconds waited so far every PROGRESS_S."""
    began = time.monotonic()
    deadline, told = began + timeout, began
    while time.monotonic() < deadline:
        if progress is not None and time.monotonic() - told >= PROGRESS_S:
            told = time.monotonic()
            progress(told - began)
        if process.poll() is not None:
            output = log.read_text()[-3000:] if log else ""
            raise RuntimeError(f"server exited with code {process.returncode}:\n{output}")
        try:
            httpx.get(url, timeout=1.0, verify=verify)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        if process.poll() is None:
            return
    raise TimeoutError(f"server did not answer at {url} within {timeout} s")


def stop(process: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Stop a process we started: SIGTERM, then SIGKILL if it is still there after timeout_s."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the thread that started it dies, however it dies
    (Linux). uvicorn re-raises SIGTERM after its graceful shutdown, so code after it
    never runs on a plain `kill`; without this, a helper would outlive `strata serve`."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: stop() still ends helpers on Ctrl-C


class Supervised:
    """A `strata` subcommand run as a helper process and kept running.

    It starts at once and must answer `ready_url` within `timeout_s` (CommandError if it
    does not; load_timeout_s for one that loads a model), said every PROGRESS_S. A thread
    then waits on it, which also reaps it (no zombie), and restarts it when it exits, after
    a backoff that doubles up to 30 s and starts over once a run lasted a minute.
    """

    def __init__(self, name: str, command: list[str], ready_url: str, timeout_s: float = START_S) -> None:
        self.name, self.command, self.ready_url, self.timeout_s = name, command, ready_url, timeout_s
        self.restarts = 0
        self._stopped = threading.Event()
        try:
            self._launch()
        except (RuntimeError, TimeoutError) as exc:
            raise CommandError(f"{name} did not start: {exc}".strip()) from None
        threading.Thread(target=self._watch, name=f"supervise {name}", daemon=True).start()

    def _launch(self) -> None:
        """Start the helper as self.process and wait until it answers; RuntimeError if it
        exits first, TimeoutError (after killing it) if it does not answer in time."""
        self.process = subprocess.Popen([sys.executable, "-m", "strata.cli", *self.command],
                                        preexec_fn=_die_with_parent)
        try:
            wait_for_http(self.ready_url, self.process, timeout=self.timeout_s, progress=self._starting)
        except TimeoutError:
            self.process.kill()
            self.process.wait()
            raise

    def _starting(self, waited_s: float) -> None:
        print(f"{self.name} is still starting: {waited_s:.0f} s of at most {self.timeout_s:.0f} s", file=sys.stderr,
              flush=True)

    def _watch(self) -> None:
        attempt = 0
        while True:
            began = time.monotonic()
            code = self.process.wait()
            if self._stopped.is_set():
                return
            attempt = 0 if time.monotonic() - began >= STEADY_S else attempt
            wait = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
            log.warning("%s (pid %d) exited with code %s; restarting it in %.0f s",
                        self.name, self.process.pid, code, wait)
            attempt += 1
            if self._stopped.wait(wait):
                return
            try:
                self._launch()
            except (RuntimeError, TimeoutError) as exc:
                log.warning("%s failed to restart: %s", self.name, exc)
                continue  # it has exited: the next turn waits a longer backoff
            if self._stopped.is_set():  # stop() came while it started
                self.stop()
                return
            self.restarts += 1
            log.warning("%s restarted (pid %d)", self.name, self.process.pid)

    def stop(self) -> None:
        """Stop supervising, then stop the helper (SIGTERM, SIGKILL after 10 s)."""
        self._stopped.set()
        stop(self.process)
