"""Fixtures shared by tests/ and playwright/: a real edge server on a loopback port."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from testing.servers import edge_process


@pytest.fixture(scope="session")
def edge_server() -> Iterator[tuple[str, subprocess.Popen]]:
    """A `strata serve` process on 127.0.0.1 (with its own cloud), stopped after the
    session: its base URL and its process (the edge itself; the cloud is its child)."""
    with edge_process() as running:
        yield running


@pytest.fixture(scope="session")
def edge_url(edge_server: tuple[str, subprocess.Popen]) -> str:
    """Base URL of the session's `strata serve`."""
    return edge_server[0]
