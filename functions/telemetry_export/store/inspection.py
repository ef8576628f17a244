"""SQL for looking into the queue without changing what the exporter does: preview, quarantine, history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from telemetry_export.store.connection import Cursor, uuid_array


class QueueRow(NamedTuple):
    id: str
    payload: bytes
    attempts: int
    at: datetime | None  # when it was exported or quarantined, for the listings that have one
    note: str | None  # last error or quarantine reason
    withheld: bool = False  # set aside as outside the export scope, not as unsendable


def next_exportable(cursor: Cursor, limit: int) -> list[QueueRow]:
    """The rows the next claim would take, in its order; reads only, locks nothing."""
    cursor.execute(
        "SELECT id::text, payload_pb, attempts, NULL::timestamptz, last_error FROM telemetry_events_export_queue"
        " WHERE exported_at IS NULL AND quarantined_at IS NULL AND (leased_until IS NULL OR leased_until < now())"
        " ORDER BY timestamp LIMIT %s",
        (limit,),
    )
    return [QueueRow(r[0], bytes(r[1]), r[2], r[3], r[4]) for r in cursor.fetchall()]


def quarantined(cursor: Cursor, limit: int) -> list[QueueRow]:
    """Quarantined rows, most recently set aside first."""
    cursor.execute(
        "SELECT id::text, payload_pb, attempts, quarantined_at, quarantine_reason, withheld"
        " FROM telemetry_events_export_queue"
        " WHERE quarantined_at IS NOT NULL ORDER BY quarantined_at DESC, id LIMIT %s",
        (limit,),
    )
    return [QueueRow(r[0], bytes(r[1]), r[2], r[3], r[4], r[5]) for r in cursor.fetchall()]


def requeue(cursor: Cursor, ids: Sequence[str] | None, withheld_only: bool = False) -> list[str]:
    """Makes quarantined (or withheld) rows exportable again with a fresh attempt count; None means all of them.

    The export scope is checked again when they are sent: a row still outside it is withheld again.
    """
    cursor.execute(
        "UPDATE telemetry_events_export_queue SET quarantined_at = NULL, attempts = 0, withheld = false,"
        " last_error = 'requeued after quarantine: ' || quarantine_reason, quarantine_reason = NULL"
        " WHERE quarantined_at IS NOT NULL AND (%s OR id = ANY(%s::uuid[])) AND (withheld OR NOT %s)"
        " RETURNING id::text",
        (ids is None, uuid_array(ids or ()), withheld_only),
    )
    return [row[0] for row in cursor.fetchall()]


def exported_since(cursor: Cursor, seconds: float, limit: int) -> list[QueueRow]:
    """Rows exported in the last `seconds`, most recent first (only what cleanup has not deleted yet)."""
    cursor.execute(
        "SELECT id::text, payload_pb, attempts, exported_at, NULL FROM telemetry_events_export_queue"
        " WHERE exported_at >= now() - %s * interval '1 second' ORDER BY exported_at DESC, id LIMIT %s",
        (seconds, limit),
    )
    return [QueueRow(r[0], bytes(r[1]), r[2], r[3], r[4]) for r in cursor.fetchall()]


RECORDED_COLUMNS = (
    "event_id",
    "name",
    "client",
    "user_id",
    "anonymous_user_id",
    "argument",
    "public_argument",
    "feature_flags",
    "billing_product_category",
    "url",
    "first_source_url",
    "last_source_url",
    "cohort_id",
    "referrer",
    "device_session_id",
)


def recorded_events(cursor: Cursor, limit: int) -> list[dict[str, Any]]:
    """The first `limit` event_logs rows in recording order, by column name (JSON columns decoded)."""
    cursor.execute(
        "SELECT event_id::text, name, client, user_id, anonymous_user_id, argument, public_argument, feature_flags,"
        " billing_product_category, url, first_source_url, last_source_url, cohort_id, referrer, device_session_id"
        " FROM event_logs ORDER BY id LIMIT %s",
        (limit,),
    )
    return [dict(zip(RECORDED_COLUMNS, row, strict=True)) for row in cursor.fetchall()]


def count_exported_since(cursor: Cursor, seconds: float) -> int:
    """How many rows were exported in the last `seconds` (and are not cleaned up yet)."""
    cursor.execute(
        "SELECT count(*) FROM telemetry_events_export_queue WHERE exported_at >= now() - %s * interval '1 second'",
        (seconds,),
    )
    return int(cursor.fetchone()[0])


def count_quarantined(cursor: Cursor) -> int:
    cursor.execute("SELECT count(*) FROM telemetry_events_export_queue WHERE quarantined_at IS NOT NULL")
    return int(cursor.fetchone()[0])


def count_exportable(cursor: Cursor) -> int:
    """How many rows a claim could take now (next_exportable's rows, without its limit)."""
    cursor.execute(
        "SELECT count(*) FROM telemetry_events_export_queue"
        " WHERE exported_at IS NULL AND quarantined_at IS NULL AND (leased_until IS NULL OR leased_until < now())"
    )
    return int(cursor.fetchone()[0])
