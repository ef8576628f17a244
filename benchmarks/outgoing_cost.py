"""CPU per row of the exporter's re-check of each payload (outgoing.py), step by step, and what a changed row costs.

Usage: python -m benchmarks.outgoing_cost [--rows 20000] [--rounds 5] [--admin-url URL]

The re-check parses the stored bytes, drops unknown fields, checks the ID and the event rules,
redacts with today's policy, serializes deterministically and compares with the stored bytes.
Its common path is a row whose stored bytes are exactly that serialization: nothing changes,
and the row is marked exported as it is. A row whose bytes differ is sent as re-serialized and
its stored payload is replaced when it is marked: this prints what that costs the exporter and
Postgres per row, so the share of rows taking that path matters. Rows are realistic sample
events, stored as recording stores them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable

from benchmarks._database import benchmark_database
from telemetry_events import pb
from telemetry_events.export_mode import ExportScope
from telemetry_events.ids import canonical_uuid
from telemetry_events.redaction import policy_from
from telemetry_events.validation import event_problems
from telemetry_export.outgoing import outgoing
from telemetry_export.recording import record_events
from telemetry_export.sample_events import sample_events
from telemetry_export.store import export_queue
from telemetry_export.store.connection import Connection, Connections, DatabaseSettings, transaction

POLICY = policy_from()


def _checked(row_id: str, payload: bytes) -> pb.Event:
    """The re-check up to redaction: parsed, unknown fields dropped, the ID and the event rules checked."""
    event = pb.Event()
    event.ParseFromString(payload)
    event.DiscardUnknownFields()
    canonical_uuid(event.id) == row_id  # noqa: B015 - measured, not used
    event_problems(event, id_checked=True)
    return event


def _steps(rows: list[tuple[str, bytes]]) -> dict[str, Callable[[], object]]:
    """The re-check, one step more each time (the last is outgoing() itself)."""

    def parse():
        for _, payload in rows:
            pb.Event().ParseFromString(payload)

    def discard():
        for _, payload in rows:
            event = pb.Event()
            event.ParseFromString(payload)
            event.DiscardUnknownFields()

    def checks():
        for row_id, payload in rows:
            _checked(row_id, payload)

    def serialize():
        for row_id, payload in rows:
            POLICY.redact(_checked(row_id, payload)).SerializeToString(deterministic=True) == payload  # noqa: B015

    def whole():
        for row_id, payload in rows:
            outgoing(row_id, payload, POLICY)

    return {
        "parse": parse,
        "+ DiscardUnknownFields": discard,
        "+ ID and event rules": checks,
        "+ redact, deterministic bytes, compare": serialize,
        "outgoing() as the exporter calls it": whole,
    }


def _cpu_per_row(work: Callable[[], object], rows: int, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.process_time()
        work()
        times.append(time.process_time() - started)
    return statistics.median(times) / rows * 1e6


def _backend_cpu(conn: Connection) -> Callable[[], float]:
    cursor = conn.cursor()
    cursor.execute("SELECT pg_backend_pid()")
    pid = cursor.fetchone()[0]
    conn.commit()

    def read() -> float:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    return read


def _mark_cost(conn: Connection, rows: list[tuple[str, bytes]], rewrite: bool, rounds: int) -> tuple[float, float]:
    """Exporter and Postgres CPU per row of marking the rows exported, replacing their payloads or not."""
    backend = _backend_cpu(conn)
    ids = [row_id for row_id, _ in rows]
    sent = dict(rows) if rewrite else {}
    client, server = [], []
    for _ in range(rounds):
        with transaction(conn) as cursor:
            cursor.execute("UPDATE telemetry_events_export_queue SET exported_at = NULL")
        conn.autocommit = True
        conn.cursor().execute("VACUUM telemetry_events_export_queue")
        conn.autocommit = False
        client_before, server_before = time.process_time(), backend()
        for start in range(0, len(ids), 10_000):
            with transaction(conn) as cursor:
                export_queue.mark_exported(cursor, ids[start : start + 10_000], sent)
        client.append(time.process_time() - client_before)
        server.append(backend() - server_before)
    return statistics.median(client) / len(rows) * 1e6, statistics.median(server) / len(rows) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--admin-url", help="admin URL of a Postgres server (default: a throwaway cluster)")
    args = parser.parse_args()
    with benchmark_database(args.admin_url) as url, Connections(DatabaseSettings(url=url)).connection() as conn:
        record_events(conn, sample_events(args.rows, seed=7), POLICY, ExportScope())
        with transaction(conn) as cursor:
            rows = export_queue.claim(cursor, args.rows, 300, str(uuid.uuid4()))
        stored = [(row.id, row.payload) for row in rows]
        changed = sum(outgoing(row_id, payload, POLICY).changed for row_id, payload in stored)
        size = statistics.mean(len(payload) for _, payload in stored)
        print(f"{len(stored):,} recorded sample events, {size:.0f} bytes each on average:")
        print(f"  rows whose stored bytes are not the re-check's: {changed:,} ({changed / len(stored):.0%})")
        for name, work in _steps(stored).items():
            print(f"  {name:<40} {_cpu_per_row(work, len(stored), args.rounds):5.2f} µs/row")
        kept_client, kept_server = _mark_cost(conn, stored, rewrite=False, rounds=args.rounds)
        new_client, new_server = _mark_cost(conn, stored, rewrite=True, rounds=args.rounds)
        print(f"  marking exported, payload kept:      exporter {kept_client:5.2f}, Postgres {kept_server:5.2f} µs/row")
        print(f"  marking exported, payload replaced:  exporter {new_client:5.2f}, Postgres {new_server:5.2f} µs/row")


if __name__ == "__main__":
    main()
