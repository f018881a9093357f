"""Fixtures shared by tests/ and playwright/: real servers on loopback ports."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from edge_server.config import Settings
from testing.servers import edge_process, free_port
from testing.triton import TritonUnavailable, install, triton_process


@pytest.fixture(scope="session")
def edge_cloud_url() -> str:
    """Base URL of the cloud the session's `strata serve` starts (edge_server)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def edge_server(edge_cloud_url: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """A `strata serve` process on 127.0.0.1 (with its own cloud, at edge_cloud_url),
    stopped after the session: its base URL and its process (the edge itself; the cloud
    is its child)."""
    with edge_process("--cloud-port", edge_cloud_url.rsplit(":", 1)[1]) as running:
        yield running


@pytest.fixture(scope="session")
def edge_url(edge_server: tuple[str, subprocess.Popen]) -> str:
    """Base URL of the session's `strata serve`."""
    return edge_server[0]


@pytest.fixture(scope="session")
def triton_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a `strata serve` process whose cloud is a real Triton Inference Server
    (the nvidia-pytriton wheel's) over what `strata export-triton --backend python` writes
    for models/. Triton loads the unpruned model's cuts only: a plan for a pruned variant
    that reaches this cloud falls back to the edge. Skipped only if Triton cannot be installed."""
    from edge_server.blocks.main_path import MainPath
    from edge_server.cloud.triton import write_repository
    from edge_server.edge.cloud_client import suffix_model_name

    try:
        install()
    except TritonUnavailable as exc:
        pytest.skip(f"Triton Inference Server cannot be installed here: {exc}")
    models = Settings().models_dir
    repository = tmp_path_factory.mktemp("triton")
    write_repository(models, repository, backend="python")
    main_path = MainPath(models)
    cuts = [suffix_model_name(main_path.name, k) for k in range(len(main_path))]
    with triton_process(repository, cuts) as (cloud, _), edge_process("--cloud-url", cloud) as (url, _):
        yield url
