"""The `strata` command line: one entry point, one module per subcommand.

Each subcommand module exposes SUMMARY, add_arguments(parser) and run(args), and keeps
its heavy imports (uvicorn, torch, onnxruntime) inside run(), so `strata --help` stays
fast and this file stays importable in Pyodide.
"""

from __future__ import annotations

import argparse
import importlib
import sys


class CommandError(Exception):
    """Something the person running the command can fix (a missing file, a package to
    install): printed as `error: <message>` with exit status 2, without a traceback."""


COMMANDS: dict[str, str] = {
    "provision": "edge_server.provision.cli",
    "serve": "edge_server.edge.cli",
    "cloud": "edge_server.cloud.cli",
    "export-triton": "edge_server.cloud.triton_cli",
    "link": "edge_server.link_emulator.cli",
    "bench": "bench.cli",
    "train": "training.train",
    "export": "training.export",
    "evaluate": "training.evaluate",
    "prune": "training.prune",
    "branch": "training.branch",
    "split": "edge_server.split.cli",
    "classify": "strata.client.cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strata",
        description="Run a deep neural network across the browser, an edge server and the cloud.",
        epilog="Run `strata COMMAND --help` for the options of one command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, path in COMMANDS.items():
        module = importlib.import_module(path)
        command = sub.add_parser(
            name,
            help=module.SUMMARY,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # `python -m strata.cli` runs a second copy of this module as __main__; the commands
    # raise strata.cli.CommandError, so run the main() that catches that class.
    from strata.cli import main as imported_main

    sys.exit(imported_main())
