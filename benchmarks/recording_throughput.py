"""Recording throughput against a plain COPY of the same payload bytes, measured in one run.

Usage: python benchmarks/recording_throughput.py [--events 100000] [--admin-url postgresql://...]

Both sides write inside one transaction per round, in chunks of the same size, to the same
server. The baseline copies (id, timestamp, payload) into a table shaped like the export
queue (same columns and indexes); recording validates, redacts, translates each event for
event_logs and writes both tables. Rounds alternate between the two to share the noise.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

from benchmarks._database import benchmark_database
from telemetry_events.export_mode import ExportScope
from telemetry_events.redaction import policy_from
from telemetry_export.recording import DEFAULT_CHUNK_SIZE, record_events
from telemetry_export.sample_events import sample_events
from telemetry_export.store.connection import Connections, DatabaseSettings


def copy_baseline(conn, rows: list[tuple[str, str, bytes]]) -> float:
    cursor = conn.cursor()
    started = time.perf_counter()
    for start in range(0, len(rows), DEFAULT_CHUNK_SIZE):
        chunk = rows[start : start + DEFAULT_CHUNK_SIZE]
        text = "".join(f"{event_id}\t{timestamp}\t\\\\x{payload.hex()}\n" for event_id, timestamp, payload in chunk)
        cursor.execute("COPY baseline_queue (id, timestamp, payload_pb) FROM STDIN", stream=io.BytesIO(text.encode()))
    conn.commit()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--admin-url", help="admin URL of a Postgres server (default: a throwaway cluster)")
    args = parser.parse_args()

    policy, scope = policy_from(), ExportScope()
    events = list(sample_events(args.events, seed=1))
    rows = [(e.id, e.timestamp.ToJsonString(), policy.redacted_bytes(e)) for e in events]
    payload_bytes = sum(len(r[2]) for r in rows)

    with benchmark_database(args.admin_url) as url, Connections(DatabaseSettings(url=url)).connection() as conn:
        cursor = conn.cursor()
        cursor.execute("CREATE TABLE baseline_queue (LIKE telemetry_events_export_queue INCLUDING ALL)")
        conn.commit()
        recording_times, copy_times = [], []
        for _ in range(args.rounds):
            cursor.execute("TRUNCATE telemetry_events_export_queue, event_logs, baseline_queue")
            conn.commit()
            started = time.perf_counter()
            result = record_events(conn, events, policy, scope)
            recording_times.append(time.perf_counter() - started)
            assert result.recorded == args.events and result.queued == args.events, result
            copy_times.append(copy_baseline(conn, rows))

    recording, baseline = statistics.median(recording_times), statistics.median(copy_times)
    print(
        f"events: {args.events:,} (payload {payload_bytes / args.events:.0f} bytes on average), rounds: {args.rounds}"
    )
    print(f"recording:  {args.events / recording:>10,.0f} events/s  (median {recording:.2f} s; both tables, redacted)")
    print(f"plain COPY: {args.events / baseline:>10,.0f} rows/s    (median {baseline:.2f} s; payload bytes only)")
    print(f"ratio recording / COPY: {baseline / recording:.2f} (target >= 0.5)")


if __name__ == "__main__":
    main()
