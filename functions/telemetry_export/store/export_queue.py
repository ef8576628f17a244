"""SQL for the exporter: claim rows under a lease, then record each row's outcome.

Every statement here is one short transaction's worth of work; no transaction stays open
while the exporter talks to the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from telemetry_export.store.connection import Cursor, uuid_array


class ClaimedRow(NamedTuple):
    id: str
    payload: bytes
    attempts: int


_CLAIM = """
WITH claimable AS (
    SELECT id FROM telemetry_events_export_queue
    WHERE exported_at IS NULL AND quarantined_at IS NULL AND (leased_until IS NULL OR leased_until < now())
      AND id NOT IN (SELECT unnest(%s::uuid[]))
    ORDER BY timestamp
    LIMIT %s
    FOR UPDATE SKIP LOCKED
)
UPDATE telemetry_events_export_queue AS queue
SET leased_until = now() + %s * interval '1 second', lease_owner = %s, attempts = queue.attempts + 1
FROM claimable
WHERE queue.id = claimable.id
RETURNING queue.id::text, queue.payload_pb, queue.attempts,
    -- For ordering only: an integer is far cheaper for the driver to decode than a timestamp.
    (extract(epoch FROM queue.timestamp) * 1000000)::bigint
"""


def claim(cursor: Cursor, limit: int, lease_seconds: float, owner: str, skip: Sequence[str] = ()) -> list[ClaimedRow]:
    """Leases the oldest exportable rows to `owner`, skipping rows other runs hold; counts an attempt.

    `skip`: rows this run already tried and released; they wait for the next run.
    """
    # NOT IN over a subquery is planned as a hashed lookup; `<> ALL(array)` would scan the array per row.
    cursor.execute(_CLAIM, (uuid_array(skip), limit, lease_seconds, owner))
    rows = sorted(cursor.fetchall(), key=lambda row: row[3])
    return [ClaimedRow(row[0], bytes(row[1]), row[2]) for row in rows]


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
