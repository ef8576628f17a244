"""SQL for recording: events into `event_logs` and the export queue, in bulk.

A chunk costs a handful of round trips whatever its size: one COPY per table inside a
savepoint. COPY straight into the tables is about twice as fast as staging rows and moving
them with INSERT ... SELECT. IDs already recorded are not looked up first: the unique index
refuses them, the savepoint is rolled back, and only then are they looked up and left out.
Duplicates are rare, and the lookup would cost every chunk an index probe per event.

Rows arrive as COPY text lines, built once per event by `event_log_line` and `queue_line`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from telemetry_export.store.connection import Cursor, DatabaseError, error_field, uuid_array

UNIQUE_VIOLATION = "23505"

LOG_COLUMNS = (
    "event_id, timestamp, name, url, user_id, anonymous_user_id, source, argument, public_argument, version,"
    " feature_flags, cohort_id, first_source_url, last_source_url, referrer, device_session_id,"
    " billing_product_category, client"
)
QUEUE_COLUMNS = "id, timestamp, payload_pb"


class RecordedRow(NamedTuple):
    """One event ready to write: its canonical ID, its event_logs line, its queue line when it is exported."""

    event_id: str
    log_line: str
    queue_line: str | None


def prepare(cursor: Cursor) -> None:
    # Bulk statements on fresh data get wild cost estimates; JIT compiling them costs more than it saves.
    cursor.execute("SET LOCAL jit = off")


def recorded_ids(cursor: Cursor, event_ids: Sequence[str]) -> set[str]:
    """Which of `event_ids` are already in event_logs (all IDs are canonical UUID strings)."""
    cursor.execute("SELECT event_id::text FROM event_logs WHERE event_id = ANY(%s::uuid[])", (uuid_array(event_ids),))
    return {row[0] for row in cursor.fetchall()}


def insert_chunk(cursor: Cursor, rows: Sequence[RecordedRow]) -> int:
    """COPYs `rows` into both tables; returns how many were queued.

    Runs inside a savepoint, so a unique violation (an ID recorded before, or by a concurrent
    writer) leaves the transaction usable: it raises DuplicateRecorded and the caller looks
    the IDs up and retries without them.
    """
    cursor.execute("SAVEPOINT record_chunk")
    try:
        cursor.execute(f"COPY event_logs ({LOG_COLUMNS}) FROM STDIN", stream=_stream([r.log_line for r in rows]))
        queued = [r.queue_line for r in rows if r.queue_line is not None]
        if queued:
            cursor.execute(f"COPY telemetry_events_export_queue ({QUEUE_COLUMNS}) FROM STDIN", stream=_stream(queued))
    except DatabaseError as error:
        cursor.execute("ROLLBACK TO SAVEPOINT record_chunk")
        if error_field(error, "C") == UNIQUE_VIOLATION:
            raise DuplicateRecorded(str(error)) from error
        raise
    cursor.execute("RELEASE SAVEPOINT record_chunk")
    return len(queued)


class DuplicateRecorded(Exception):
    """One of the chunk's IDs is already recorded (earlier, or by a concurrent writer)."""


# COPY data goes out in pieces this large. pg8000 reads a file-like stream 8 KiB at a time and
# flushes each piece: every flush gives up the GIL, and the writer thread gets it back only when
# the thread preparing the next chunk lets go (after up to 5 ms, Python's switch interval), so
# recording crawled and the two threads took turns instead of overlapping. A list of large pieces
# is sent with a handful of flushes per chunk.
_COPY_PIECE_BYTES = 1 << 20


def _stream(lines: list[str]) -> list[memoryview]:
    # The last newline goes as a piece of its own: adding it to the chunk's text would copy all of it once more.
    data = memoryview("\n".join(lines).encode())
    pieces = [data[start : start + _COPY_PIECE_BYTES] for start in range(0, len(data), _COPY_PIECE_BYTES)]
    pieces.append(memoryview(b"\n"))
    return pieces


_NULL = "\\N"
# What COPY text must escape, and NUL, which Postgres text cannot hold at all.
_SPECIAL = re.compile(r"[\\\t\n\r\x00]").search


def _escaped(value: str | None) -> str:
    if value is None:
        return _NULL
    return (
        value.replace("\\", "\\\\")
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\x00", "\ufffd")  # best-effort local copy: replaced, not refused
    )


def _json(document: str | None) -> str:
    # JSON text escapes every control character itself: only its backslashes need COPY's escape.
    if document is None:
        return _NULL
    return document.replace("\\", "\\\\") if "\\" in document else document


def event_log_line(
    event_id: str,
    timestamp: str,
    name: str,
    url: str,
    user_id: int,
    anonymous_user_id: str,
    source: str,
    argument_json: str | None,
    public_argument_json: str,
    version: str,
    feature_flags_json: str | None,
    cohort_id: str | None,
    first_source_url: str | None,
    last_source_url: str | None,
    referrer: str | None,
    device_session_id: str | None,
    billing_product_category: str | None,
    client: str | None,
) -> str:
    """One event_logs row as COPY text (without its newline), in LOG_COLUMNS order."""
    texts = [
        name,
        url,
        anonymous_user_id,
        source,
        version,
        cohort_id,
        first_source_url,
        last_source_url,
        referrer,
        device_session_id,
        billing_product_category,
        client,
    ]
    if _SPECIAL("".join(filter(None, texts))):  # one scan of all the text for the rare value to escape
        texts = [_escaped(text) for text in texts]
    else:
        texts = [_NULL if text is None else text for text in texts]
    return "\t".join(
        (
            event_id,
            timestamp,
            texts[0],
            texts[1],
            str(user_id),
            texts[2],
            texts[3],
            _json(argument_json),
            _json(public_argument_json),
            texts[4],
            _json(feature_flags_json),
            *texts[5:],
        )
    )


def queue_line(event_id: str, timestamp: str, payload: bytes) -> str:
    """One export queue row as COPY text: bytea as \\x and hex, the backslash itself escaped."""
    return f"{event_id}\t{timestamp}\t\\\\x{payload.hex()}"
