"""`telemetry-export export [--drain]`: one exporter run, or runs until the backlog is empty."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from telemetry_export.cli.context import CommandFailed, Progress, settings
from telemetry_export.store.connection import Connections, DatabaseError, InterfaceError

if TYPE_CHECKING:
    from telemetry_export.exporter import ExportReport


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="send queued events to the gateway (one run, as the export function does)",
        description=(
            "Run the exporter once, as the scheduled function does, within its time budget. With --drain, run "
            "again and again until the backlog is empty, showing progress. Prints the run's JSON summary."
        ),
    )
    parser.add_argument("--drain", action="store_true", help="repeat runs until nothing exportable is left")
    parser.add_argument("--max-batches", type=int, metavar="N", help="stop each run after N batches")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: a run needs grpc, registering the parser (and `--help`) does not.
    from telemetry_export.export_job import export_once
    from telemetry_export.exporter import ExportReport

    config = settings()
    if args.max_batches is not None and args.max_batches < 1:
        raise CommandFailed("--max-batches must be at least 1")
    connections = Connections(config.database)
    progress = Progress("exporting")
    total = ExportReport()
    try:
        while True:
            report = export_once(
                config,
                connections,
                max_batches=args.max_batches,
                on_progress=lambda partial, base=total.exported: progress.update(base + partial.exported),
            )
            _accumulate(total, report)
            if not args.drain or report.gateway_unavailable or report.instance_refused or not report.remaining:
                break
            if report.exported == 0 and report.quarantined == 0:
                break  # nothing moved: another run would spin
    except (DatabaseError, InterfaceError, OSError) as error:
        progress.finish()
        raise CommandFailed(f"database unavailable: {error}") from None
    finally:
        connections.close()
    progress.finish()
    print(json.dumps(total.summary()))
    if total.instance_refused:
        return 2  # a configuration to fix, as for invalid settings
    return 1 if total.gateway_unavailable else 0


def _accumulate(total: ExportReport, report: ExportReport) -> None:
    total.exported += report.exported
    total.failed += report.failed
    total.quarantined += report.quarantined
    total.withheld += report.withheld
    total.batches += report.batches
    total.remaining = report.remaining
    total.stopped_because = report.stopped_because
    total.duration_s += report.duration_s
