"""`telemetry-export`: one subcommand group per module, each registering its own parsers.

A subcommand module exposes `register(subparsers)`; each parser it adds sets `run`, a
function taking the parsed arguments and returning the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from telemetry_events.envvars import SettingError
from telemetry_export.cli.context import CommandFailed

# Imported lazily by name, so `--help` of one subcommand never loads another's dependencies.
SUBCOMMAND_MODULES = (
    "telemetry_export.cli.db",
    "telemetry_export.cli.record",
    "telemetry_export.cli.export",
    "telemetry_export.cli.jobs",
    "telemetry_export.cli.queue",
    "telemetry_export.cli.inspect_queue",
    "telemetry_export.cli.tail",
)
# The module that registers each command: a run imports that one only (tests/test_cli_imports.py
# checks this table against what the modules register). Anything else, `--help` say, imports them all.
COMMAND_MODULES = {
    "db": "telemetry_export.cli.db",
    "record": "telemetry_export.cli.record",
    "export": "telemetry_export.cli.export",
    "cleanup": "telemetry_export.cli.jobs",
    "metrics": "telemetry_export.cli.jobs",
    "queue": "telemetry_export.cli.queue",
    "preview": "telemetry_export.cli.inspect_queue",
    "exported": "telemetry_export.cli.inspect_queue",
    "quarantine": "telemetry_export.cli.inspect_queue",
    "tail": "telemetry_export.cli.tail",
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given `argv`, with only the parsers of the command it names when that is known."""
    parser = argparse.ArgumentParser(
        prog="telemetry-export",
        description="Record, export, inspect and clean up product telemetry events.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_installed_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    command = next((arg for arg in argv or () if not arg.startswith("-")), None)
    names = (COMMAND_MODULES[command],) if command in COMMAND_MODULES else SUBCOMMAND_MODULES
    for name in names:
        importlib.import_module(name).register(subparsers)
    return parser


def _installed_version() -> str:
    try:
        return version("telemetry-export")
    except PackageNotFoundError:
        return "(not installed)"  # running from a source tree without `pip install -e .`


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (CommandFailed, SettingError) as error:
        print(f"telemetry-export: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("telemetry-export: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
