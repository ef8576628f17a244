"""SQL for recording: events into `event_logs` and the export queue, in bulk.

A chunk costs a handful of round trips whatever its size: one query for IDs already
recorded, then one COPY per table inside a savepoint. COPY straight into the tables is
about twice as fast as staging rows and moving them with INSERT ... SELECT.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from telemetry_export.event_logs import EventLogRow
from telemetry_export.store.connection import Cursor, DatabaseError, error_field, uuid_array

UNIQUE_VIOLATION = "23505"

_LOG_COLUMNS = (
    "event_id, timestamp, name, url, user_id, anonymous_user_id, source, argument, public_argument, version,"
    " feature_flags, cohort_id, first_source_url, last_source_url, referrer, device_session_id,"
    " billing_product_category, client"
)


class QueuedEvent(NamedTuple):
    """One event to record: its local row, and its redacted payload when it is to be exported."""

    log: EventLogRow
    payload: bytes | None


def prepare(cursor: Cursor) -> None:
    # Bulk statements on fresh data get wild cost estimates; JIT compiling them costs more than it saves.
    cursor.execute("SET LOCAL jit = off")


def recorded_ids(cursor: Cursor, event_ids: Sequence[str]) -> set[str]:
    """Which of `event_ids` are already in event_logs (all IDs are canonical UUID strings)."""
    cursor.execute("SELECT event_id::text FROM event_logs WHERE event_id = ANY(%s::uuid[])", (uuid_array(event_ids),))
    return {row[0] for row in cursor.fetchall()}


def insert_chunk(cursor: Cursor, events: Sequence[QueuedEvent]) -> int:
    """COPYs `events` (none recorded before) into both tables; returns how many were queued.

    Runs inside a savepoint, so a unique violation from a concurrent writer recording the
    same ID leaves the transaction usable: it raises DuplicateRecorded and the caller retries.
    """
    cursor.execute("SAVEPOINT record_chunk")
    try:
        cursor.execute(f"COPY event_logs ({_LOG_COLUMNS}) FROM STDIN", stream=_log_stream(e.log for e in events))
        queued = [e for e in events if e.payload is not None]
        if queued:
            cursor.execute(
                "COPY telemetry_events_export_queue (id, timestamp, payload_pb) FROM STDIN",
                stream=_queue_stream(queued),
            )
    except DatabaseError as error:
        cursor.execute("ROLLBACK TO SAVEPOINT record_chunk")
        if error_field(error, "C") == UNIQUE_VIOLATION:
            raise DuplicateRecorded(str(error)) from error
        raise
    cursor.execute("RELEASE SAVEPOINT record_chunk")
    return len(queued)


class DuplicateRecorded(Exception):
    """Another transaction recorded one of the chunk's IDs after it was checked."""


_NULL = "\\N"


def _text(value: str | None) -> str:
    if value is None:
        return _NULL
    # str.replace runs in C; str.translate with a mapping costs a Python lookup per character.
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _log_stream(rows: Iterable[EventLogRow]) -> io.BytesIO:
    text = _text
    lines = [
        "\t".join(
            (
                row.event_id,
                row.timestamp,
                text(row.name),
                text(row.url),
                str(row.user_id),
                text(row.anonymous_user_id),
                text(row.source),
                text(row.argument_json),
                text(row.public_argument_json),
                text(row.version),
                text(row.feature_flags_json),
                text(row.cohort_id),
                text(row.first_source_url),
                text(row.last_source_url),
                text(row.referrer),
                text(row.device_session_id),
                text(row.billing_product_category),
                text(row.client),
            )
        )
        for row in rows
    ]
    lines.append("")
    return io.BytesIO("\n".join(lines).encode())


def _queue_stream(events: Iterable[QueuedEvent]) -> io.BytesIO:
    # bytea in COPY text format: \x then hex, with the backslash itself escaped.
    lines = [f"{e.log.event_id}\t{e.log.timestamp}\t\\\\x{e.payload.hex()}\n" for e in events if e.payload is not None]
    return io.BytesIO("".join(lines).encode())
