"""`telemetry-export record FILE.jsonl|-` and `telemetry-export record --sample N`."""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Iterable
from contextlib import ExitStack

from telemetry_events.validation import InvalidEventError
from telemetry_export.cli.context import CommandFailed, Progress, database, positive_int, settings
from telemetry_export.event_files import EventFileError, read_event_rows
from telemetry_export.recording import RecordResult, event_rows, record_rows
from telemetry_export.sample_events import sample_events
from telemetry_export.store.recording import RecordedRow


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "record",
        help="record events into the export queue and event_logs",
        description=(
            "Record events from a JSON Lines file (one protojson Event a line; id and timestamp are filled in "
            "when absent) or generate realistic sample events. All or nothing: a bad line records nothing."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", help="JSON Lines file of events, or - for standard input")
    source.add_argument("--sample", type=positive_int, metavar="N", help="record N realistic sample events")
    parser.add_argument("--seed", type=int, help="random seed for --sample, for repeatable content")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # What is loaded so far outlives the command: keep the collector from rescanning it while
    # each event's short-lived objects come and go (about 3% of recording's instructions).
    gc.freeze()
    try:
        return _record(args)
    finally:
        gc.unfreeze()


def _record(args: argparse.Namespace) -> int:
    config = settings()
    policy, scope = config.redaction, config.export_scope
    with ExitStack() as stack:
        rows: Iterable[RecordedRow]
        if args.sample:
            rows = event_rows(sample_events(args.sample, seed=args.seed), policy, scope)
            progress = Progress("recording", args.sample)
        elif args.file == "-":
            rows = read_event_rows(getattr(sys.stdin, "buffer", sys.stdin), "<stdin>", policy, scope)
            progress = Progress("recording")
        else:
            try:
                handle = stack.enter_context(open(args.file, "rb"))
            except OSError as error:
                raise CommandFailed(f"cannot read {args.file}: {error.strerror}") from None
            rows = read_event_rows(handle, args.file, policy, scope)
            progress = Progress("recording")
        conn = stack.enter_context(database())
        try:
            result = record_rows(
                conn, rows, on_chunk=lambda partial: progress.update(partial.recorded + len(partial.duplicate_ids))
            )
        except (EventFileError, InvalidEventError) as error:
            progress.finish()
            raise CommandFailed(f"{error}; nothing was recorded") from None
        progress.finish()
    _print_result(result)
    return 0


def _print_result(result: RecordResult) -> None:
    print(f"recorded {result.recorded:,} event(s), queued {result.queued:,} for export")
    if result.duplicate_ids:
        shown = ", ".join(result.duplicate_ids[:5])
        more = f" and {len(result.duplicate_ids) - 5:,} more" if len(result.duplicate_ids) > 5 else ""
        print(f"skipped {len(result.duplicate_ids):,} duplicate event ID(s): {shown}{more}")
