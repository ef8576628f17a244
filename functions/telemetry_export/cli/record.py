"""`telemetry-export record FILE.jsonl|-` and `telemetry-export record --sample N`."""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import ExitStack

from telemetry_events.export_mode import ExportScope
from telemetry_events.redaction import RedactionPolicy
from telemetry_events.validation import InvalidEventError
from telemetry_export.cli.context import CommandFailed, Progress, database, non_negative_int, positive_int, settings
from telemetry_export.event_files import (
    BLOCK_LINES,
    EventFileError,
    read_event_rows,
    read_event_rows_in_parallel,
)
from telemetry_export.reader_processes import ProcessDied
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
    parser.add_argument(
        "--jobs",
        type=non_negative_int,
        default=_default_readers(),
        metavar="N",
        help=(
            "processes preparing a file's events while this one writes them (default: one per CPU this process "
            f"may use, at most {MAX_DEFAULT_READERS}: %(default)s here; 0: prepare them in this process); a file "
            f"of up to {BLOCK_LINES:,} lines is always prepared here"
        ),
    )
    parser.set_defaults(run=run)


# The command's own process unpickles and writes what the readers prepare, at about a fifth of a
# reader's CPU per event: past four or five readers it is the limit, and more only cost memory.
MAX_DEFAULT_READERS = 4


def _default_readers() -> int:
    try:
        usable = len(os.sched_getaffinity(0))  # what this process may run on, not what the machine has
    except AttributeError:
        usable = os.cpu_count() or 1
    return min(usable, MAX_DEFAULT_READERS)


def run(args: argparse.Namespace) -> int:
    _one_malloc_arena()
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
            rows = _file_rows(getattr(sys.stdin, "buffer", sys.stdin), "<stdin>", args.jobs, policy, scope)
            progress = Progress("recording")
        else:
            try:
                handle = stack.enter_context(open(args.file, "rb"))
            except OSError as error:
                raise CommandFailed(f"cannot read {args.file}: {error.strerror}") from None
            rows = _file_rows(handle, args.file, args.jobs, policy, scope)
            progress = Progress("recording")
        conn = stack.enter_context(database())
        try:
            result = record_rows(
                conn, rows, on_chunk=lambda partial: progress.update(partial.recorded + len(partial.duplicate_ids))
            )
        except (EventFileError, InvalidEventError, ProcessDied) as error:
            progress.finish()
            raise CommandFailed(f"{error}; nothing was recorded") from None
        progress.finish()
    _print_result(result)
    return 0


# glibc's mallopt parameter for the number of malloc arenas (malloc.h).
_M_ARENA_MAX = -8


def _one_malloc_arena() -> None:
    """Keeps this process' memory flat in the file's size, whatever threads allocate and free rows.

    Rows are built on one thread and freed on another (the writer thread). glibc gives threads
    arenas of their own, and memory freed across them is reused poorly: with reader processes
    the command grew from 83 to 99 MiB between 100,000 and 1,000,000 lines. With one arena it
    stays at about 70 MiB, no slower. Elsewhere than glibc, nothing to do.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_ARENA_MAX, 1)


def _file_rows(
    lines: Iterable[bytes | str], source: str, jobs: int, policy: RedactionPolicy, scope: ExportScope
) -> Iterator[RecordedRow]:
    if jobs == 0:
        return read_event_rows(lines, source, policy, scope)
    return read_event_rows_in_parallel(lines, source, policy, scope, jobs)


def _print_result(result: RecordResult) -> None:
    print(f"recorded {result.recorded:,} event(s), queued {result.queued:,} for export")
    if result.duplicate_ids:
        shown = ", ".join(result.duplicate_ids[:5])
        more = f" and {len(result.duplicate_ids) - 5:,} more" if len(result.duplicate_ids) > 5 else ""
        print(f"skipped {len(result.duplicate_ids):,} duplicate event ID(s): {shown}{more}")
