"""Every command explains itself."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from strata.cli import COMMANDS, build_parser

from edge_server.config import REPO

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
def _subcommands() -> tuple[argparse._SubParsersAction, dict[str, argparse.ArgumentParser]]:
    [commands] = [action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)]
    return commands, commands.choices


def test_every_summary_is_a_sentence_and_every_option_says_what_it_does() -> None:
    commands, parsers = _subcommands()
    for summary in commands._choices_actions:
        assert summary.help[0].isupper() and summary.help.endswith("."), (summary.dest, summary.help)
    for name, parser in parsers.items():
        silent = [action.option_strings or action.dest for action in parser._actions
                  if not isinstance(action, argparse._HelpAction) and not action.help]
        assert not silent, f"strata {name}: options without help: {silent}"


def test_bench_writes_to_build_by_default_and_to_docs_when_asked() -> None:
    parser = build_parser()
    assert parser.parse_args(["bench", "planner"]).out == REPO / "build" / "bench"
    assert parser.parse_args(["bench", "planner", "--out", "docs/bench"]).out == Path("docs/bench")
    assert "build/" in (REPO / ".gitignore").read_text().split()


def test_the_readme_command_table_names_the_options_people_need() -> None:
    table = (REPO / "README.md").read_text().split("## The command line")[1].split("\n## ")[0]
    for option in ("--emulate", "--cloud-port", "STRATA_MODELS_DIR", "--out docs/bench", "build/bench/"):
        assert option in table, option
