"""Recording: the API applications call to put events in, both tables in one transaction.

The queue receives each event redacted, exactly as it will leave; `event_logs` receives the
local, unredacted view of every event, whether or not the export mode queues it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from telemetry_events import pb
from telemetry_events.export_mode import ExportScope
from telemetry_events.ids import canonical_uuid
from telemetry_events.redaction import RedactionPolicy
from telemetry_events.validation import InvalidEventError, event_problems
from telemetry_export.event_logs import event_log_row
from telemetry_export.store import recording as store
from telemetry_export.store.connection import Connection, Cursor, transaction

logger = logging.getLogger(__name__)

# A few round trips a chunk whatever its size; the size bounds the memory one chunk holds.
DEFAULT_CHUNK_SIZE = 5_000
# A concurrent writer recording the same IDs can only collide once per ID; a few retries suffice.
_CHUNK_ATTEMPTS = 5


@dataclass
class RecordResult:
    recorded: int = 0
    queued: int = 0
    duplicate_ids: list[str] = field(default_factory=list)


def record_events(
    conn: Connection,
    events: Iterable[pb.Event],
    policy: RedactionPolicy,
    scope: ExportScope,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_chunk: Callable[[RecordResult], None] | None = None,
) -> RecordResult:
    """Records `events` in one transaction: all of them, or none if any is invalid.

    Each event is validated first. An event whose ID is already recorded (earlier, or
    earlier in this batch) is skipped and reported in `duplicate_ids`, not an error.
    `events` may be a generator: it is consumed chunk by chunk. The caller's Event objects
    are not modified.

    Raises:
        InvalidEventError: an event breaks a rule; nothing of the batch is written.
    """
    result = RecordResult()
    seen: set[str] = set()
    with transaction(conn) as cursor:
        store.prepare(cursor)
        chunk: list[store.QueuedEvent] = []
        for position, event in enumerate(events, start=1):
            problems = event_problems(event)
            if problems:
                raise InvalidEventError(f"event {position}: {'; '.join(problems)}")
            event = _with_canonical_id(event)
            if event.id in seen:
                result.duplicate_ids.append(event.id)
                continue
            seen.add(event.id)
            row = event_log_row(event, scope.exports(event.feature))
            chunk.append(store.QueuedEvent(row, policy.redacted_bytes(event) if row.exportable else None))
            if len(chunk) >= chunk_size:
                _write_chunk(cursor, chunk, result)
                chunk = []
                if on_chunk is not None:
                    on_chunk(result)
        if chunk:
            _write_chunk(cursor, chunk, result)
            if on_chunk is not None:
                on_chunk(result)
    if result.duplicate_ids:
        logger.warning("skipped duplicate event IDs", extra={"duplicates": len(result.duplicate_ids)})
    return result


def _with_canonical_id(event: pb.Event) -> pb.Event:
    """`event`, or a copy spelling its ID in canonical form: one ID, one spelling, everywhere."""
    canonical = canonical_uuid(event.id)
    if canonical == event.id:
        return event
    copy = pb.Event()
    copy.CopyFrom(event)
    copy.id = canonical
    return copy


def _write_chunk(cursor: Cursor, chunk: list[store.QueuedEvent], result: RecordResult) -> None:
    for _ in range(_CHUNK_ATTEMPTS):
        already = store.recorded_ids(cursor, [e.log.event_id for e in chunk])
        if already:
            result.duplicate_ids.extend(e.log.event_id for e in chunk if e.log.event_id in already)
            chunk = [e for e in chunk if e.log.event_id not in already]
        if not chunk:
            return
        try:
            result.queued += store.insert_chunk(cursor, chunk)
        except store.DuplicateRecorded:
            continue  # another writer committed one of these IDs meanwhile: check again
        result.recorded += len(chunk)
        return
    raise RuntimeError(f"recording kept colliding with concurrent writers after {_CHUNK_ATTEMPTS} attempts")
