"""Every command explains itself."""

from __future__ import annotations

import subprocess
import sys

import pytest

from strata.cli import COMMANDS


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
