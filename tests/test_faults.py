"""Faults in the cloud behind a real `strata serve`: hung (SIGSTOP), then killed.

A hung cloud is marked down after a few timeouts or failed health probes: requests
fall back at once, and HELLO and PONG tell workers so. The cloud child that dies is
reaped and restarted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from strata import wire
from strata.plan import Plan
from websockets.sync.client import connect

from bench.load import conv1_outputs, run_load
from edge_server.blocks.main_path import MainPath
from edge_server.config import Settings
from testing.servers import edge_process

MODELS = Settings().models_dir
N = len(MainPath(MODELS))


@pytest.fixture(scope="module")
def serve() -> Iterator[tuple[str, subprocess.Popen]]:
    """`strata serve` with the cloud it starts and supervises."""
    with edge_process() as running:
        yield running


def _children(process: subprocess.Popen) -> set[int]:
    """The pids of a process's children, whichever of its threads started them (Linux)."""
    tasks = Path(f"/proc/{process.pid}/task")
    return {int(pid) for task in tasks.iterdir() for pid in (task / "children").read_text().split()}


def _state(pid: int) -> str | None:
    """A process's state letter (Z: a zombie), or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def _cloud_reported(edge_url: str) -> tuple[bool, bool]:
    """What a worker hears of the cloud now: HELLO's `cloud`, then a PONG's."""
    with connect(edge_url.replace("http://", "ws://") + "/ws", compression=None) as socket:
        hello = wire.decode(socket.recv(timeout=5)).header
        socket.send(wire.encode(wire.ping(1, 0.0)))
        return hello["cloud"], wire.decode(socket.recv(timeout=5)).header["cloud"]


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def test_a_hung_cloud_is_marked_down_and_requests_fall_back_at_once(serve: tuple[str, subprocess.Popen]) -> None:
    """Before: every request waited out the 5 s timeout; p50 was 10 s at 32 clients."""
    edge_url, process = serve
    [cloud] = _children(process)
    url = edge_url.replace("http://", "ws://") + "/ws"
    features = conv1_outputs(MODELS, 16)
    assert _cloud_reported(edge_url) == (True, True)
    os.kill(cloud, signal.SIGSTOP)
    try:
        result = asyncio.run(run_load(url, features, Plan(1, N - 2, "f16"), clients=16, requests=3, batching=True))
        assert result.errors == 0 and len(result.latencies_ms) == 16 * 3
        assert sorted(result.latencies_ms)[len(result.latencies_ms) // 2] < 1000  # the median: no timeout waited
        # The first forwards wait out one timeout; those queued behind them are cut when the cloud is
        # marked down, rather than sent to it in turn (which took two timeouts).
        assert max(result.latencies_ms) < (Settings().cloud_timeout_s + 2.5) * 1000
        assert _cloud_reported(edge_url) == (False, False)
    finally:
        os.kill(cloud, signal.SIGCONT)
    assert _wait_for(lambda: _cloud_reported(edge_url) == (True, True), 10)  # re-probed in the background


def test_the_cloud_child_is_reaped_and_restarted(serve: tuple[str, subprocess.Popen]) -> None:
    """Before: a killed cloud was left a zombie and never restarted."""
    edge_url, process = serve
    [cloud] = _children(process)
    os.kill(cloud, signal.SIGKILL)
    assert _wait_for(lambda: _state(cloud) is None, 5), f"the dead cloud is left in state {_state(cloud)}"
    assert _wait_for(lambda: len(_children(process) - {cloud}) == 1, 10)
    assert _wait_for(lambda: _cloud_reported(edge_url) == (True, True), 60)  # and the edge reports it up
