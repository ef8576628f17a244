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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="telemetry-export",
        description="Record, export, inspect and clean up product telemetry events.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_installed_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def _installed_version() -> str:
    try:
        return version("telemetry-export")
    except PackageNotFoundError:
        return "(not installed)"  # running from a source tree without `pip install -e .`


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
