"""Fixtures shared by tests/ and playwright/: a real edge server on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testing.servers import edge_process


@pytest.fixture(scope="session")
def edge_url() -> Iterator[str]:
    """Base URL of a `strata serve` process on 127.0.0.1, stopped after the session."""
    with edge_process() as (url, _):
        yield url
