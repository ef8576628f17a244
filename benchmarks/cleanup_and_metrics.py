"""Cleanup's deletion rate and the metrics computation time on a 1,000,000-row export queue.

Usage: python -m benchmarks.cleanup_and_metrics [--rows 1000000] [--admin-url postgresql://...]

The queue is filled server-side in one INSERT ... SELECT generate_series (time-ordered IDs, as
UUID v7 are; 300-byte payloads), then ANALYZEd as autovacuum would. Two shapes:

  mixed    80 % exported 30-48 h ago (cleanup's work), 10 % exported within 23 h, 9 % waiting
           (1,000 of them in flight), 1 % quarantined (half of them for more than 30 days)
  stuck    every row waiting: the worst case for the metrics query, which reads each waiting row

Metrics are timed on both (the first run pays for setting hint bits on fresh rows; then the
median of the next runs); cleanup runs once on the mixed queue with the default settings
(24 h / 30 d windows, 50,000-row chunks) and its rate counts all rows it deleted.
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks._database import benchmark_database
from telemetry_export.cleanup import DONE, clean_up
from telemetry_export.queue_metrics import QueueHealth, measure
from telemetry_export.settings import CleanupSettings
from telemetry_export.store.connection import Connection, Connections, DatabaseSettings

# Fractions of the mixed queue, by row number i in 1..rows (see the module docstring).
_MIXED = """
INSERT INTO telemetry_events_export_queue
    (id, timestamp, payload_pb, exported_at, leased_until, lease_owner, quarantined_at, quarantine_reason)
SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid,
       now() - interval '50 hours' + i * (interval '49 hours' / %(rows)s),
       decode(repeat('0a', 300), 'hex'),
       CASE WHEN i <= %(old_exported)s THEN now() - interval '48 hours' + i * (interval '23 hours' / %(rows)s)
            WHEN i <= %(exported)s THEN now() - interval '23 hours'
                                         + (i - %(old_exported)s) * (interval '23 hours' / %(recent)s)
       END,
       CASE WHEN i > %(exported)s AND i <= %(exported)s + 1000 THEN now() + interval '5 minutes' END,
       CASE WHEN i > %(exported)s AND i <= %(exported)s + 1000 THEN '00000000-0000-4000-8000-000000000001'::uuid END,
       CASE WHEN i > %(waiting)s + %(old_quarantined)s THEN now() - interval '1 day'
            WHEN i > %(waiting)s THEN now() - interval '40 days' END,
       CASE WHEN i > %(waiting)s THEN 'cannot be decoded' END
FROM generate_series(1, %(rows)s) AS i
"""

_STUCK = """
INSERT INTO telemetry_events_export_queue (id, timestamp, payload_pb)
SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid,
       now() - interval '50 hours' + i * (interval '49 hours' / %(rows)s),
       decode(repeat('0a', 300), 'hex')
FROM generate_series(1, %(rows)s) AS i
"""


def _fill(conn: Connection, sql: str, values: dict[str, int]) -> float:
    cursor = conn.cursor()
    cursor.execute("TRUNCATE telemetry_events_export_queue")
    started = time.perf_counter()
    # Whole numbers computed here, inlined: pg8000 takes positional parameters only.
    cursor.execute(sql % values)  # noqa: S608 - integers from this script, not input
    conn.commit()
    elapsed = time.perf_counter() - started
    conn.autocommit = True
    cursor.execute("ANALYZE telemetry_events_export_queue")
    conn.autocommit = False
    return elapsed


def _time_metrics(conn: Connection, runs: int) -> tuple[float, float, QueueHealth]:
    """(first run, median of the following `runs`) in seconds, and the figures measured."""
    times = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        health = measure(conn)
        times.append(time.perf_counter() - started)
    return times[0], statistics.median(times[1:]), health


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5, help="timed metrics runs after the first (default 5)")
    parser.add_argument("--admin-url", help="admin URL of a Postgres server (default: a throwaway cluster)")
    args = parser.parse_args()

    rows = args.rows
    shape = {
        "rows": rows,
        "old_exported": rows * 8 // 10,
        "exported": rows * 9 // 10,
        "recent": rows // 10,
        "waiting": rows * 99 // 100,
        "old_quarantined": rows // 200,
    }
    quarantined = rows - shape["waiting"]
    eligible = shape["old_exported"] + shape["old_quarantined"]

    with benchmark_database(args.admin_url) as url, Connections(DatabaseSettings(url=url)).connection() as conn:
        filled = _fill(conn, _MIXED, shape)
        mixed_first, mixed_median, health = _time_metrics(conn, args.runs)

        settings = CleanupSettings()
        result = clean_up(conn, settings)
        deleted = result.deleted + result.deleted_quarantined
        assert result.stopped_because == DONE and deleted == eligible, result
        after_first, after_median, _ = _time_metrics(conn, args.runs)

        stuck_filled = _fill(conn, _STUCK, {"rows": rows})
        stuck_first, stuck_median, stuck = _time_metrics(conn, args.runs)
        assert stuck.backlog == rows, stuck

    rate = deleted / result.duration_s
    print(f"queue: {rows:,} rows, filled in {filled:.1f} s (stuck shape: {stuck_filled:.1f} s)")
    print(
        f"  mixed: {shape['old_exported']:,} exported 30-48 h ago, {shape['recent']:,} exported within 23 h,"
        f" {health.backlog:,} waiting ({health.in_flight:,} in flight), {quarantined:,} quarantined"
        f" ({shape['old_quarantined']:,} for over 30 days)"
    )
    print(f"metrics, mixed queue:      first {mixed_first:.3f} s, median {mixed_median:.3f} s  (target <= 1 s)")
    print(f"metrics, 1M-row backlog:   first {stuck_first:.3f} s, median {stuck_median:.3f} s  (target <= 1 s)")
    print(
        f"cleanup: deleted {deleted:,} rows ({result.deleted:,} exported, {result.deleted_quarantined:,} quarantined)"
        f" in {result.duration_s:.2f} s, {result.chunks} chunks of up to {settings.chunk_size:,}:"
        f" {rate:,.0f} rows/s  (target >= 50,000)"
    )
    print(f"metrics after cleanup:     first {after_first:.3f} s, median {after_median:.3f} s")


if __name__ == "__main__":
    main()
