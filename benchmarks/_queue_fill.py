"""Filling the export queue with many valid rows quickly, server-side, for benchmarks."""

from __future__ import annotations

from telemetry_events import pb
from telemetry_export.sample_events import sample_events


def event_tail_bytes() -> bytes:
    """A realistic redacted event's wire bytes after its `id` field (field 1), to append to any ID."""
    event = next(sample_events(1, seed=1))
    event.ClearField("marketing_tracking")
    event.parameters.ClearField("private_metadata")
    event.ClearField("id")
    return event.SerializeToString(deterministic=True)  # as recording stores events


def fill_queue(conn, rows: int) -> int:
    """Inserts `rows` exportable rows with generate_series; returns the payload size in bytes.

    Each payload is field 1 (tag 0x0A, length 36, the row's UUID) followed by the same tail:
    a valid Event whose ID matches its row, built without a round trip per row.
    """
    tail = event_tail_bytes()
    cursor = conn.cursor()
    cursor.execute(
        "INSERT INTO telemetry_events_export_queue (id, timestamp, payload_pb)"
        " SELECT u.id, now() - (%s - u.g) * interval '1 millisecond',"
        "        '\\x0a24'::bytea || convert_to(u.id::text, 'UTF8') || %s"
        " FROM (SELECT g, gen_random_uuid() AS id FROM generate_series(1, %s) AS g) AS u",
        (rows, tail, rows),
    )
    conn.commit()
    cursor.execute("ANALYZE telemetry_events_export_queue")
    conn.commit()
    pb.Event.FromString(b"\x0a\x24" + b"0" * 36 + tail)  # the layout parses as an Event
    return 2 + 36 + len(tail)
