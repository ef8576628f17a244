"""SQL for the exporter: claim rows under a lease, then record each row's outcome.

Every statement here is one short transaction's worth of work; no transaction stays open
while the exporter talks to the gateway.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from telemetry_export.store.binary_copy import BinaryCopyError, row_data
from telemetry_export.store.connection import Cursor, uuid_array


class ClaimedRow(NamedTuple):
    id: str
    payload: bytes
    attempts: int


# COPY sends the payloads' own bytes (see binary_copy): in the text form pg8000 asks for, bytea
# arrives as hex and decoding it was most of the exporter's cost per claimed row
# (benchmarks/claim_cost.py). COPY takes no bind parameters, so the claim's travel as settings
# local to the claim's transaction (set_config(..., true)), as values, never as SQL. The planner
# reads the LIMIT from the setting when it plans, so the claim still walks the exportable index.
_CLAIM_PARAMETERS = """
SELECT set_config('telemetry_export.claim_skip', %s, true), set_config('telemetry_export.claim_limit', %s, true),
    set_config('telemetry_export.claim_lease_seconds', %s, true), set_config('telemetry_export.claim_owner', %s, true)
"""
_CLAIM = """
COPY (
    WITH claimable AS (
        SELECT id FROM telemetry_events_export_queue
        WHERE exported_at IS NULL AND quarantined_at IS NULL AND (leased_until IS NULL OR leased_until < now())
          -- NOT IN over a subquery is planned as a hashed lookup; `<> ALL(array)` would scan the array per row.
          AND id NOT IN (SELECT unnest(current_setting('telemetry_export.claim_skip')::uuid[]))
        ORDER BY timestamp
        LIMIT current_setting('telemetry_export.claim_limit')::integer
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE telemetry_events_export_queue AS queue
        SET leased_until = now() + current_setting('telemetry_export.claim_lease_seconds')::float8 * interval '1 s',
            lease_owner = current_setting('telemetry_export.claim_owner')::uuid,
            attempts = queue.attempts + 1
        FROM claimable
        WHERE queue.id = claimable.id
        RETURNING queue.id, queue.timestamp, queue.payload_pb, queue.attempts
    )
    SELECT id::text, attempts, payload_pb FROM claimed ORDER BY timestamp
) TO STDOUT (FORMAT binary)
"""


def claim(cursor: Cursor, limit: int, lease_seconds: float, owner: str, skip: Sequence[str] = ()) -> list[ClaimedRow]:
    """Leases the oldest exportable rows to `owner`, skipping rows other runs hold; counts an attempt.

    Oldest first. Runs in the caller's transaction (the parameters are settings local to it).
    `skip`: rows this run already tried and released; they wait for the next run.
    """
    cursor.execute(_CLAIM_PARAMETERS, (uuid_array(skip), str(int(limit)), repr(float(lease_seconds)), owner))
    copied = io.BytesIO()
    cursor.execute(_CLAIM, stream=copied)
    return claimed_rows(copied.getvalue())


# A row of the claim's binary COPY: 3 fields; the ID as its 36 characters of text; attempts as a
# 4-byte integer; the payload's length, then its bytes.
_CLAIMED_ROW = struct.Struct("!hi36siii")
_CLAIMED_LAYOUT = (3, 36, 4)


def claimed_rows(data: bytes) -> list[ClaimedRow]:
    """The rows of the claim's binary COPY output.

    Raises:
        BinaryCopyError: not that layout, or cut off: never a shorter payload.
    """
    position, end = row_data(data)
    rows = []
    while position < end:
        if position + _CLAIMED_ROW.size > end:
            raise BinaryCopyError("a claimed row is cut off")
        fields, id_length, row_id, attempts_length, attempts, length = _CLAIMED_ROW.unpack_from(data, position)
        start = position + _CLAIMED_ROW.size
        position = start + length
        if (fields, id_length, attempts_length) != _CLAIMED_LAYOUT or length < 0 or position > end:
            raise BinaryCopyError(
                f"a claimed row is not the claim's (ID, attempts, payload): {fields} fields, an ID of {id_length} "
                f"bytes, attempts of {attempts_length} bytes, a payload of {length} bytes"
            )
        rows.append(ClaimedRow(row_id.decode(), data[start:position], attempts))
    return rows


def mark_exported(cursor: Cursor, ids: Sequence[str], sent: Mapping[str, bytes] | None = None) -> int:
    """Marks acknowledged rows exported, whoever holds them now: the gateway has them either way.

    `sent`: for rows whose bytes on the wire differed from the stored ones (fields the schema
    does not know dropped, a tightened redaction), those bytes replace the stored payload, so
    that what `exported` shows is exactly what left.
    """
    if not ids:
        return 0
    cursor.execute(
        "UPDATE telemetry_events_export_queue SET exported_at = now(), leased_until = NULL, lease_owner = NULL,"
        " last_error = NULL WHERE id = ANY(%s::uuid[]) AND exported_at IS NULL",
        (uuid_array(ids),),
    )
    marked = cursor.rowcount
    changed = [i for i in ids if sent and i in sent]
    if changed:
        cursor.execute(
            "UPDATE telemetry_events_export_queue AS queue SET payload_pb = sent.payload"
            " FROM unnest(%s::uuid[], %s::bytea[]) AS sent(id, payload) WHERE queue.id = sent.id",
            (uuid_array(changed), [sent[i] for i in changed]),
        )
    return marked


def release(cursor: Cursor, ids: Sequence[str], owner: str, error: str, refund_attempt: bool) -> int:
    """Makes rows this run still holds exportable again, recording why they were not exported.

    `refund_attempt` undoes the claim's attempt when the rows never had a fair chance (the
    gateway was unreachable, the run ran out of time): outages must not push rows towards
    quarantine.
    """
    if not ids:
        return 0
    cursor.execute(
        "UPDATE telemetry_events_export_queue SET leased_until = NULL, lease_owner = NULL, last_error = %s,"
        " attempts = attempts - %s"
        " WHERE id = ANY(%s::uuid[]) AND lease_owner = %s AND exported_at IS NULL",
        (error[:1000], 1 if refund_attempt else 0, uuid_array(ids), owner),
    )
    return cursor.rowcount


def quarantine(cursor: Cursor, reasons: Mapping[str, str], owner: str, withheld: bool = False) -> int:
    """Sets rows aside for good, each with its reason; they stop counting as backlog.

    `withheld`: set aside because they are outside the export scope, not because they cannot be sent.
    """
    if not reasons:
        return 0
    ids = list(reasons)
    cursor.execute(
        "UPDATE telemetry_events_export_queue AS queue"
        " SET quarantined_at = now(), quarantine_reason = reasons.reason, leased_until = NULL, lease_owner = NULL,"
        " withheld = %s"
        " FROM unnest(%s::uuid[], %s::text[]) AS reasons(id, reason)"
        " WHERE queue.id = reasons.id AND queue.lease_owner = %s AND queue.exported_at IS NULL",
        (withheld, uuid_array(ids), [reasons[i][:1000] for i in ids], owner),
    )
    return cursor.rowcount


def exportable_count(cursor: Cursor) -> int:
    """Rows waiting for export, leased or not."""
    cursor.execute(
        "SELECT count(*) FROM telemetry_events_export_queue WHERE exported_at IS NULL AND quarantined_at IS NULL"
    )
    return int(cursor.fetchone()[0])
