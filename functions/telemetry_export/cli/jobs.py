"""`telemetry-export cleanup` and `telemetry-export metrics`: one run of each scheduled job, by hand.

Both run exactly what the functions run, with the same settings (TELEMETRY_CLEANUP_*,
GOOGLE_CLOUD_PROJECT, TELEMETRY_METRICS_*), so a run here behaves as the next scheduled run
would.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime

from telemetry_export import monitoring
from telemetry_export.cleanup import DONE, CleanupResult, clean_up
from telemetry_export.cli.context import CommandFailed, Progress, database, settings
from telemetry_export.cli.queue import format_duration
from telemetry_export.queue_metrics import FUNCTION_NAME, MetricsReport, measure, report


def register(subparsers: argparse._SubParsersAction) -> None:
    cleanup = subparsers.add_parser(
        "cleanup",
        help="delete exported rows past the retention window (and quarantined rows past theirs)",
        description=(
            "Delete rows exported longer ago than TELEMETRY_CLEANUP_RETENTION (default 24h) and rows quarantined "
            "longer ago than TELEMETRY_CLEANUP_QUARANTINE_RETENTION (default 30d), oldest first, in chunks of "
            "TELEMETRY_CLEANUP_CHUNK_SIZE, stopping after TELEMETRY_CLEANUP_TIME_BUDGET."
        ),
    )
    cleanup.add_argument("--json", action="store_true", help="print the run's summary as one JSON object")
    cleanup.set_defaults(run=run_cleanup)

    metrics = subparsers.add_parser(
        "metrics",
        help="measure the queue and write its gauges (Cloud Monitoring, or the log without a project)",
        description=(
            "Measure the export queue and write the gauges as report_queue_metrics does: to Cloud Monitoring when "
            "GOOGLE_CLOUD_PROJECT is set, otherwise as one JSON log line. Prints the figures as JSON."
        ),
    )
    metrics.add_argument(
        "--no-write", action="store_true", help="only print the figures; write them nowhere (see also: queue status)"
    )
    metrics.set_defaults(run=run_metrics)


def run_cleanup(args: argparse.Namespace) -> int:
    config = settings().cleanup
    progress = Progress("deleting")
    with database() as conn:
        result = clean_up(conn, config, on_chunk=progress.update)
    progress.finish()
    print(json.dumps(result.summary()) if args.json else describe_cleanup(result))
    return 0


def describe_cleanup(result: CleanupResult) -> str:
    """Three lines: what went under which window, and what is left."""
    stop = "nothing left to delete" if result.stopped_because == DONE else "stopped: time budget used up"
    return "\n".join(
        [
            f"deleted {result.deleted:,} exported row(s): exported before {_when(result.exported_before)}"
            f" (retention {format_duration(result.retention_seconds)})",
            f"deleted {result.deleted_quarantined:,} quarantined row(s): quarantined before"
            f" {_when(result.quarantined_before)} (retention {format_duration(result.quarantine_retention_seconds)})",
            f"still eligible: {result.remaining_eligible:,} exported, {result.remaining_eligible_quarantined:,}"
            f" quarantined; {stop} after {result.duration_s:.1f} s",
        ]
    )


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def run_metrics(args: argparse.Namespace) -> int:
    config = settings()
    with database() as conn:
        health = measure(conn)
    if args.no_write:
        result = MetricsReport(health, written_to="nowhere")
    else:
        result = report(health, monitoring.sink_for(config.metrics, FUNCTION_NAME))
    print(json.dumps(result.summary(), indent=2))
    if result.error is not None:
        raise CommandFailed(result.error)
    return 0
