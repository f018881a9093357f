"""A slower device: each ms of CPU a page's Web Worker uses takes `rate` ms of wall time.

CDP's Emulation.setCPUThrottlingRate, which DevTools and Lighthouse use to emulate a
phone, throttles a page's main thread only (Chromium suspends that one thread in a
spinning signal handler); Chromium 156 refuses it on a worker's own target ("Operation
is only supported for pages, not workers"). Strata's runtime and onnxruntime-web both
run in a dedicated worker, so this module throttles from outside, `strata bench grid`
records the check.

Every QUANTUM_S it reads the CPU time the renderers' worker threads have used, from a
perf task-clock counter per thread (exact at every read, unlike /proc, which Linux
updates only at scheduler ticks, too late for a 2 ms request), and stops the renderer
processes (SIGSTOP, then SIGCONT) long enough that the wall time catches up with
`rate` times that CPU time. A worker waiting on the network uses no CPU and is not held
back, as on a real phone, whose radio is no slower for its slow cores. The helper runs
at real-time priority where allowed, so that its stops are on time. Linux only;
perf_event_open needs root or kernel.perf_event_paranoid <= 1.

It is an emulation with known errors, which the grid measures rather than assumes
(bench/grid/throttle.py): the debt of a request's last quantum is paid after it ends
(short requests come out a little fast), and a worker stopped and resumed a thousand
times a second finds its caches cold more often than one left alone, more so when
other processes share the machine (every request comes out a little slow).

Run it as a helper process (`python -m bench.throttle RATE --root PID`): it follows
every renderer descended from PID, including ones started after it, and resumes them
when it stops or its parent dies.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

QUANTUM_S = 0.001  # how often the workers' CPU time is read: a request of 2 ms is stopped in mid-run
RESCAN_S = 0.2  # how often new renderers and worker threads are looked for
WORKER_THREAD = "DedicatedWorker"  # Chromium's name for a dedicated worker's thread
PERF_EVENT_OPEN = 298  # x86-64 syscall number
PERF_TYPE_SOFTWARE, PERF_COUNT_SW_TASK_CLOCK = 1, 1
PR_SET_TIMERSLACK = 29  # prctl: let this process's sleeps end on time, not up to 50 us late
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


class _PerfEventAttr(ctypes.Structure):
    """struct perf_event_attr up to config2 (PERF_ATTR_SIZE_VER1), the rest zero."""

    _fields_ = [("type", ctypes.c_uint32), ("size", ctypes.c_uint32), ("config", ctypes.c_uint64),
                ("sample_period", ctypes.c_uint64), ("sample_type", ctypes.c_uint64),
                ("read_format", ctypes.c_uint64), ("flags", ctypes.c_uint64), ("wakeup_events", ctypes.c_uint32),
                ("bp_type", ctypes.c_uint32), ("config1", ctypes.c_uint64), ("config2", ctypes.c_uint64)]


def task_clock(tid: int) -> int:
    """A file descriptor whose 8 bytes read are the thread's CPU time in ns, up to date."""
    attr = _PerfEventAttr(type=PERF_TYPE_SOFTWARE, size=ctypes.sizeof(_PerfEventAttr), config=PERF_COUNT_SW_TASK_CLOCK)
    fd = _libc.syscall(PERF_EVENT_OPEN, ctypes.byref(attr), tid, -1, -1, 0)
    if fd < 0:
        error = ctypes.get_errno()
        raise OSError(error, f"perf_event_open(task-clock, thread {tid}): {os.strerror(error)}")
    return fd


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def renderers(root: int) -> list[int]:
    """Chromium renderer processes descended from `root`."""
    kids, found, pending = _children(), [], [root]
    while pending:
        pid = pending.pop()
        pending += kids.get(pid, [])
        try:
            if b"--type=renderer" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def worker_threads(pids: list[int]) -> list[int]:
    """Thread ids of the dedicated workers in these processes."""
    tids = []
    for pid in pids:
        with contextlib.suppress(OSError):
            tids += [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()
                     if (task / "comm").read_text().startswith(WORKER_THREAD)]
    return tids


class WorkerClocks:
    """The summed CPU time of a changing set of threads; a thread that ends keeps its share."""

    def __init__(self) -> None:
        self.fds: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.total_ns = 0

    def follow(self, tids: list[int]) -> None:
        for tid in set(self.fds) - set(tids):
            os.close(self.fds.pop(tid))
            self.last.pop(tid)
        for tid in set(tids) - set(self.fds):
            with contextlib.suppress(ProcessLookupError):  # ended since the scan
                self.fds[tid] = task_clock(tid)
                self.last[tid] = 0

    def read(self) -> float:
        """CPU seconds used in all."""
        for tid, fd in self.fds.items():
            with contextlib.suppress(OSError):
                now = struct.unpack("Q", os.read(fd, 8))[0]
                self.total_ns += now - self.last[tid]
                self.last[tid] = now
        return self.total_ns / 1e9


def _signal(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _on_time() -> None:
    """Sleep as precisely as this process may: real-time priority and no timer slack."""
    with contextlib.suppress(OSError):
        _libc.prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))


def throttle(rate: float, root: int) -> None:
    """Hold the workers of the renderers under `root` to 1/rate of their speed until SIGTERM
    or until `root` is gone; always resume the renderers before returning."""
    pids: list[int] = []
    stop = False

    def finish(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    _on_time()
    clocks = WorkerClocks()
    try:
        rescanned, debt = 0.0, 0.0
        used, then = clocks.read(), time.perf_counter()
        while not stop and os.getppid() == root:
            if then - rescanned > RESCAN_S:
                pids, rescanned = renderers(root), then
                clocks.follow(worker_threads(pids))
            time.sleep(QUANTUM_S)
            before, used = used, clocks.read()
            now = time.perf_counter()
            # The work done should have taken `rate` times its CPU time; the clock has given
            # part of that already. Never bank credit: an idle worker earns no fast burst.
            debt = max(0.0, debt + rate * (used - before) - (now - then))
            then = now
            if debt > QUANTUM_S:
                _signal(pids, signal.SIGSTOP)
                time.sleep(debt)
                _signal(pids, signal.SIGCONT)
                now = time.perf_counter()
                debt, then = 0.0, now
    finally:
        _signal(pids, signal.SIGCONT)


@contextmanager
def slowed(rate: float) -> Iterator[None]:
    """Within the block, the workers of every Chromium renderer this process started run
    as on a device `rate` times slower (rate 1: untouched)."""
    if rate <= 1:
        yield
        return
    helper = subprocess.Popen([sys.executable, "-m", "bench.throttle", str(rate), "--root", str(os.getpid())])
    try:
        yield
    finally:
        helper.terminate()
        helper.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throttle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rate", type=float, help="slowdown factor, e.g. 4 for a mid-range phone")
    parser.add_argument("--root", type=int, required=True,
                        help="throttle the Chromium renderers descended from this process (it must be our parent)")
    args = parser.parse_args(argv)
    throttle(args.rate, args.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
