"""Recording: the API applications call to put events in, both tables in one transaction.

The queue receives each event redacted, exactly as it will leave; `event_logs` receives the
local, unredacted view of every event, whether or not the export mode queues it.

Python prepares each event once (checks it, translates it, redacts and serializes it, writes
its COPY text) and Postgres writes the rows. The two overlap: while a writer thread streams
one chunk to the server and waits for it, the caller's thread prepares the next, so on two
cores neither waits for the other. The connection is only ever used by the writer thread
inside the transaction, one statement at a time.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from telemetry_events import pb
from telemetry_events.export_mode import ExportScope
from telemetry_events.ids import canonical_uuid
from telemetry_events.nesting import NestedTooDeep
from telemetry_events.redaction import RedactionPolicy
from telemetry_events.validation import InvalidEventError, name_problem, recording_problems, timestamp_problem
from telemetry_export.event_logs import log_line, log_line_from_arguments, postgres_timestamp
from telemetry_export.store import recording as store
from telemetry_export.store.connection import Connection, Cursor, transaction

logger = logging.getLogger(__name__)

# A few round trips a chunk whatever its size; the size bounds the memory one chunk holds
# (at most three chunks exist at once: one being written, one waiting, one being prepared).
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
    `events` may be a generator: it is consumed chunk by chunk, while a writer thread holds
    `conn` (so it must not use `conn` itself). The caller's Event objects are not modified.

    Raises:
        InvalidEventError: an event breaks a rule; nothing of the batch is written.
    """
    return record_rows(conn, event_rows(events, policy, scope), chunk_size, on_chunk)


def event_rows(events: Iterable[pb.Event], policy: RedactionPolicy, scope: ExportScope) -> Iterator[store.RecordedRow]:
    """The rows of `events`, checked one by one as they are drawn.

    Raises:
        InvalidEventError: "event N: ..." for the first event that breaks a rule.
    """
    for position, event in enumerate(events, start=1):
        try:
            yield event_row(event, policy, scope)
        except InvalidEventError as error:
            raise InvalidEventError(f"event {position}: {error}") from None


def event_row(
    event: pb.Event, policy: RedactionPolicy, scope: ExportScope, serialized: bytes | None = None
) -> store.RecordedRow:
    """One Event's rows, after the checks every event must pass.

    `serialized`: the event's wire bytes when the caller has them (ID and timestamp aside, which
    are taken from `event`): event_logs' line is read from them instead of serializing the event.

    Raises:
        InvalidEventError: naming every rule the event breaks.
    """
    feature, action = event.feature, event.action
    timestamp = event.timestamp
    seconds, nanos = timestamp.seconds, timestamp.nanos
    try:
        event_id = canonical_uuid(event.id)
    except ValueError:
        event_id = ""
    if (
        not event_id
        or not (valid_name(feature) and valid_name(action))
        or timestamp_problem(seconds, nanos)
        or not event.HasField("timestamp")
    ):
        raise InvalidEventError("; ".join(recording_problems(event)))  # every rule, in the order they are listed
    exportable = scope.exports(feature)
    stamp = postgres_timestamp(seconds, nanos)
    try:
        line = log_line(event, event_id, stamp, exportable, serialized)  # checks the nesting rule on its way
    except NestedTooDeep as error:
        raise InvalidEventError(str(error)) from None
    if not exportable:
        return store.RecordedRow(event_id, line, None)
    if event_id != event.id:  # one ID, one spelling, everywhere: the copy redaction makes carries it
        respelled = pb.Event()
        respelled.CopyFrom(event)
        respelled.id = event_id
        event = respelled
    return store.RecordedRow(event_id, line, store.queue_line(event_id, stamp, policy.redacted_bytes(event)))


def arguments_row(arguments: dict[str, Any], policy: RedactionPolicy, scope: ExportScope) -> store.RecordedRow:
    """The same rows from an Event's constructor arguments (a JSONL line, read by protojson_reader).

    The arguments hold only known fields, and their Struct was checked for depth as it was read.

    Raises:
        InvalidEventError: naming every rule the event breaks.
    """
    feature, action = arguments.get("feature", ""), arguments.get("action", "")
    timestamp = arguments.get("timestamp")
    seconds, nanos = (timestamp.get("seconds", 0), timestamp.get("nanos", 0)) if timestamp is not None else (0, 0)
    try:
        event_id = canonical_uuid(arguments.get("id", ""))
    except ValueError:
        event_id = ""
    if (
        not event_id
        or not (valid_name(feature) and valid_name(action))
        or timestamp is None
        or timestamp_problem(seconds, nanos)
    ):
        raise InvalidEventError("; ".join(recording_problems(pb.Event(**arguments))))
    exportable = scope.exports(feature)
    stamp = postgres_timestamp(seconds, nanos)
    line = log_line_from_arguments(arguments, event_id, stamp, exportable)
    if not exportable:
        return store.RecordedRow(event_id, line, None)
    redacted = policy.redacted_arguments(arguments)
    redacted["id"] = event_id
    payload = pb.Event(**redacted).SerializeToString(deterministic=True)  # as redacted_bytes
    return store.RecordedRow(event_id, line, store.queue_line(event_id, stamp, payload))


# Feature and action names seen valid: most batches use a handful, and a set lookup is far
# cheaper than the pattern. Bounded, so a stream of distinct names cannot grow it forever.
_valid_names: set[str] = set()
_MAX_REMEMBERED_NAMES = 10_000


def valid_name(name: str) -> bool:
    if name in _valid_names:
        return True
    if name_problem("name", name) is not None:
        return False
    if len(_valid_names) >= _MAX_REMEMBERED_NAMES:
        _valid_names.clear()
    _valid_names.add(name)
    return True


def record_rows(
    conn: Connection,
    rows: Iterable[store.RecordedRow],
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_chunk: Callable[[RecordResult], None] | None = None,
) -> RecordResult:
    """Writes prepared rows in one transaction, in chunks; duplicates skipped and reported.

    Raises:
        whatever drawing `rows` raises (an invalid event): nothing of the batch is written.
    """
    result = RecordResult()
    in_batch_duplicates: list[str] = []
    with transaction(conn) as cursor:
        store.prepare(cursor)
        with _ChunkWriter(cursor, result, on_chunk) as writer:
            # IDs are remembered per chunk only, so memory stays flat in the batch's size: an ID
            # repeated from an earlier chunk is refused by the unique index, inside this
            # transaction, and reported as a duplicate like one recorded before.
            chunk: dict[str, store.RecordedRow] = {}
            for row in rows:
                if row.event_id in chunk:
                    in_batch_duplicates.append(row.event_id)
                    continue
                chunk[row.event_id] = row
                if len(chunk) >= chunk_size:
                    writer.write(list(chunk.values()))
                    chunk = {}
            if chunk:
                writer.write(list(chunk.values()))
    result.duplicate_ids.extend(in_batch_duplicates)
    if result.duplicate_ids:
        logger.warning("skipped duplicate event IDs", extra={"duplicates": len(result.duplicate_ids)})
    return result


class _ChunkWriter:
    """Writes chunks on a thread of its own, one at a time, in the order they are handed over.

    `write` waits while a chunk is still waiting to be written, so at most one chunk waits
    and one is written while the caller prepares the next. An error on the writer's side
    is raised in the caller's thread at its next `write` or at the end.
    """

    _DONE = None

    def __init__(self, cursor: Cursor, result: RecordResult, on_chunk: Callable[[RecordResult], None] | None):
        self._cursor, self._result, self._on_chunk = cursor, result, on_chunk
        self._chunks: queue.Queue[list[store.RecordedRow] | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="record-chunk-writer", daemon=True)

    def __enter__(self) -> _ChunkWriter:
        self._thread.start()
        return self

    def write(self, chunk: list[store.RecordedRow]) -> None:
        self._raise_if_failed()
        while True:
            try:
                self._chunks.put(chunk, timeout=0.5)
                return
            except queue.Full:
                self._raise_if_failed()

    def __exit__(self, kind, error, traceback) -> None:
        if error is not None:
            self._stopping = True  # the batch fails: what is still queued is not written
        self._chunks.put(self._DONE)
        self._thread.join()
        if error is None:
            self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            chunk = self._chunks.get()
            if chunk is self._DONE:
                return
            if self._stopping or self._error is not None:
                continue  # drain, so that the caller's puts never block
            try:
                _write_chunk(self._cursor, chunk, self._result)
                if self._on_chunk is not None:
                    self._on_chunk(self._result)
            except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
                self._error = error


def _write_chunk(cursor: Cursor, chunk: list[store.RecordedRow], result: RecordResult) -> None:
    for _ in range(_CHUNK_ATTEMPTS):
        try:
            result.queued += store.insert_chunk(cursor, chunk)
        except store.DuplicateRecorded:
            # Recorded before, or by a concurrent writer meanwhile: leave those out and try again.
            already = store.recorded_ids(cursor, [row.event_id for row in chunk])
            result.duplicate_ids.extend(row.event_id for row in chunk if row.event_id in already)
            chunk = [row for row in chunk if row.event_id not in already]
            if not chunk:
                return
            continue
        result.recorded += len(chunk)
        return
    raise RuntimeError(f"recording kept colliding with concurrent writers after {_CHUNK_ATTEMPTS} attempts")
