"""`telemetry-export queue status`: the queue's health as a readable table, read-only.

Other `queue` subcommands live in their own modules, listed in QUEUE_COMMAND_MODULES; each
exposes `register_queue_commands(commands)` and adds its parsers to the `queue` group.
"""

from __future__ import annotations

import argparse
import importlib
import json

from telemetry_export.cli.context import database, settings
from telemetry_export.queue_metrics import QueueHealth
from telemetry_export.store.connection import transaction
from telemetry_export.store.queue_figures import queue_counts

QUEUE_COMMAND_MODULES: tuple[str, ...] = ()


def register(subparsers: argparse._SubParsersAction) -> None:
    queue = subparsers.add_parser("queue", help="inspect the export queue")
    commands = queue.add_subparsers(dest="queue_command", metavar="COMMAND", required=True)
    status = commands.add_parser(
        "status",
        help="show the backlog, oldest waiting event, rows in flight, quarantined and exported rows",
        description=(
            "Show the export queue's health: the same figures report_queue_metrics writes to Cloud Monitoring. "
            "Reads only; writes nothing anywhere."
        ),
    )
    status.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    status.set_defaults(run=run_status)
    for name in QUEUE_COMMAND_MODULES:
        importlib.import_module(name).register_queue_commands(commands)


def run_status(args: argparse.Namespace) -> int:
    where = settings().database.describe()
    with database() as conn, transaction(conn) as cursor:
        counts = queue_counts(cursor)
    health = QueueHealth.from_counts(counts)
    if args.json:
        print(
            json.dumps(
                {**health.figures(), "queue_withheld": counts.withheld, "measured_at": health.measured_at.isoformat()}
            )
        )
    else:
        print(status_table(health, where, withheld=counts.withheld))
    return 0


def status_table(health: QueueHealth, where: str, withheld: int = 0) -> str:
    """The figures as aligned rows, counts with thousands separators, durations in words."""
    if health.backlog == 0:
        oldest, drain = "none waiting", "nothing to drain"
    else:
        oldest = f"{format_duration(health.oldest_unexported_age_seconds)} ago"
        if health.estimated_drain_seconds is None:
            drain = "unknown (nothing exported in the last hour)"
        else:
            drain = format_duration(health.estimated_drain_seconds)
    counts = [
        ("backlog (waiting for export)", health.backlog),
        ("  of which in flight (leased)", health.in_flight),
        ("quarantined", health.quarantined),
        ("withheld (outside the export scope)", withheld),
        ("exported, kept until cleanup", health.exported_retained),
        ("exported in the last hour", health.exported_last_hour),
    ]
    count_width = max(len(f"{value:,}") for _, value in counts)
    rows = [(label, f"{value:,}".rjust(count_width)) for label, value in counts]
    rows[2:2] = [("oldest waiting event", oldest), ("estimated time to drain", drain)]
    label_width = max(len(label) for label, _ in rows)
    measured = health.measured_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    lines = [f"export queue at {where}, {measured}", ""]
    lines.extend(f"  {label.ljust(label_width)}  {value}" for label, value in rows)
    return "\n".join(lines)


def format_duration(seconds: float) -> str:
    """`42s`, `5m 03s`, `2h 07m`, `3d 04h`: the two largest units, which is all a reader needs."""
    whole = max(0, round(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"
