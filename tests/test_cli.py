"""Every command explains itself."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from strata.cli import COMMANDS

from testing.servers import free_port


def _help(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "strata.cli", *args, "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_top_level_help_lists_every_command() -> None:
    text = _help()
    for name in COMMANDS:
        assert name in text


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_has_help(command: str) -> None:
    assert "usage: strata " + command in _help(command)


def test_serve_help_names_the_safe_default_address() -> None:
    text = _help("serve")
    assert "127.0.0.1" in text and "--host" in text and "--port" in text


@pytest.mark.parametrize("command", ["train", "evaluate"])  # export and prune want a checkpoint first
def test_a_missing_data_set_is_an_error_that_says_what_to_install(command: str, tmp_path) -> None:
    """Through `python -m strata.cli`, as the servers and benchmarks start commands."""
    done = subprocess.run([sys.executable, "-m", "strata.cli", command, "--data", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith("error: ") and "apt-get install -y dataset-fashion-mnist" in done.stderr
    assert "Traceback" not in done.stderr


def _fails_in_one_line(*args: str, env: dict[str, str] | None = None) -> str:
    """Run `strata ARGS`; assert it exits 2 with one `error: ` line and no traceback, and
    printed no address to open; return that line."""
    done = subprocess.run([sys.executable, "-m", "strata.cli", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "open http" not in done.stdout
    return lines[0]


def test_limits_that_cannot_work_are_one_line_errors() -> None:
    assert "max-batch must be at least 1, got 0" in _fails_in_one_line("serve", "--no-cloud", "--max-batch", "0")
    assert "read-timeout-s must be more than 0" in _fails_in_one_line("serve", "--no-cloud", "--read-timeout", "0")


def test_tls_files_that_cannot_serve_are_one_line_errors(tmp_path) -> None:
    assert "TLS needs both a certificate (--tls-cert) and its key (--tls-key)" in _fails_in_one_line(
        "serve", "--no-cloud", "--tls-cert", str(tmp_path / "edge.pem"))
    assert f"cannot use {tmp_path / 'edge.pem'} with key" in _fails_in_one_line(
        "serve", "--no-cloud", "--port", str(free_port()), "--tls-cert", str(tmp_path / "edge.pem"),
        "--tls-key", str(tmp_path / "edge.key"))


def test_a_missing_model_folder_is_a_one_line_error(tmp_path) -> None:
    missing = tmp_path / "missing"
    assert f"{missing}/manifest.json is missing" in _fails_in_one_line("evaluate", "--models", str(missing))
    assert f"{missing}/manifest.json is missing" in _fails_in_one_line("evaluate", "--models", str(missing),
                                                                       "--samples")
    line = _fails_in_one_line("serve", "--port", str(free_port()), env={"STRATA_MODELS_DIR": str(missing)})
    assert f"{missing}/manifest.json is missing" in line and "STRATA_MODELS_DIR" in line
    assert f"{missing}/manifest.json is missing" in _fails_in_one_line("cloud", "--port", str(free_port()),
                                                                       "--models", str(missing))


@pytest.mark.parametrize("taken", ["edge", "cloud"])
def test_a_taken_port_is_a_one_line_error_before_anything_starts(taken: str) -> None:
    """Before: `open http://...` was printed, then a bind error; with the cloud's port
    taken, the edge went on forwarding to whatever listened there."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        args = ["--port", str(port), "--no-cloud"] if taken == "edge" else \
            ["--port", str(free_port()), "--cloud-port", str(port)]
        line = _fails_in_one_line("serve", *args)
    assert f"cannot listen on 127.0.0.1:{port}" in line and "another program listens there" in line
