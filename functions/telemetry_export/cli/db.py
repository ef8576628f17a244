"""`telemetry-export db migrate`."""

from __future__ import annotations

import argparse

from telemetry_export.cli.context import database
from telemetry_export.migrate import migrate


def register(subparsers: argparse._SubParsersAction) -> None:
    db = subparsers.add_parser("db", help="manage the database schema")
    db_commands = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    migrate_parser = db_commands.add_parser(
        "migrate", help="apply pending schema migrations (safe to run twice, or twice at once)"
    )
    migrate_parser.set_defaults(run=run_migrate)


def run_migrate(args: argparse.Namespace) -> int:
    with database() as conn:
        result = migrate(conn)
    if result.applied:
        print(f"applied {len(result.applied)} migration(s): {', '.join(result.applied)}")
    else:
        print(f"schema up to date ({result.already_applied} migration(s) already applied)")
    return 0
