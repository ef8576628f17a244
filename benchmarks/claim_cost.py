"""CPU per claimed row, for each way of fetching the payload bytes with pg8000, measured in one run.

Usage: python -m benchmarks.claim_cost [--rows 20000] [--batch 10000] [--rounds 5] [--admin-url URL]

Every candidate runs the same claim (a lease on the oldest exportable rows, an attempt counted,
rows in timestamp order) over the same rows, in batches as the exporter claims them; between
candidates the leases are undone outside the measurement. The exporter's CPU is this process'
(`time.process_time`), Postgres' is its backend's, read from `/proc/PID/stat`. Each round runs
the candidates in turn; the medians over rounds are printed, and every candidate must return
exactly what `store.claim` returns.

pg8000 asks for every result column in text form, so `bytea` arrives as `\\x` and hex digits
and is decoded by pg8000's adapter. The candidates: that (with the ordering column the store
used to sort on in Python, and with the sort done by the server), other text forms decoded in
Python (`encode(payload, 'hex' | 'escape' | 'base64')`), a faster hex adapter registered on the
connection, and COPY ... TO STDOUT (FORMAT binary), which sends the bytes themselves: what
`store.claim` does now.
"""

from __future__ import annotations

import argparse
import binascii
import codecs
import os
import statistics
import time
import uuid
import warnings
from collections.abc import Callable

import pg8000.converters

from benchmarks._database import benchmark_database
from benchmarks._queue_fill import fill_queue
from telemetry_export.store import export_queue
from telemetry_export.store.connection import Connection, Connections, Cursor, DatabaseSettings, transaction, uuid_array

ClaimedRow = export_queue.ClaimedRow

_CLAIMABLE = """
WITH claimable AS (
    SELECT id FROM telemetry_events_export_queue
    WHERE exported_at IS NULL AND quarantined_at IS NULL AND (leased_until IS NULL OR leased_until < now())
      AND id NOT IN (SELECT unnest(%s::uuid[]))
    ORDER BY timestamp
    LIMIT %s
    FOR UPDATE SKIP LOCKED
)"""
_LEASE = """
UPDATE telemetry_events_export_queue AS queue
SET leased_until = now() + %s * interval '1 second', lease_owner = %s, attempts = queue.attempts + 1
FROM claimable
WHERE queue.id = claimable.id"""


def _sorted_by_client(cursor: Cursor, limit: int, lease: float, owner: str) -> list[ClaimedRow]:
    """The claim as the store did it before: an epoch column to sort on in Python."""
    cursor.execute(
        _CLAIMABLE + _LEASE + " RETURNING queue.id::text, queue.payload_pb, queue.attempts,"
        " (extract(epoch FROM queue.timestamp) * 1000000)::bigint",
        (uuid_array(()), limit, lease, owner),
    )
    rows = sorted(cursor.fetchall(), key=lambda row: row[3])
    return [ClaimedRow(row[0], bytes(row[1]), row[2]) for row in rows]


def _text_form(payload_sql: str, decode: Callable[[str], bytes]) -> Callable[..., list[ClaimedRow]]:
    """The claim returning `payload_sql` (one of this module's expressions), decoded in Python by `decode`."""
    returning = " RETURNING queue.id, queue.timestamp, queue.payload_pb, queue.attempts)"
    select = f" SELECT id::text, {payload_sql}, attempts FROM claimed ORDER BY timestamp"  # noqa: S608 - constants
    statement = _CLAIMABLE + ", claimed AS (" + _LEASE + returning + select

    def claim(cursor: Cursor, limit: int, lease: float, owner: str) -> list[ClaimedRow]:
        cursor.execute(statement, (uuid_array(()), limit, lease, owner))
        return [ClaimedRow(i, decode(p), a) for i, p, a in cursor.fetchall()]

    return claim


_server_sorted = _text_form("payload_pb", lambda payload: payload)  # pg8000's bytea adapter decodes
_BYTEA = 17  # the type's OID


def _escape_decode(text: str) -> bytes:
    return codecs.escape_decode(text)[0]


def _hex_adapter(text: str) -> bytes:
    return binascii.a2b_hex(memoryview(text.encode())[2:])


def _with_bytea_adapter(cursor: Cursor, limit: int, lease: float, owner: str) -> list[ClaimedRow]:
    """pg8000's own path with a faster bytea adapter registered on the connection for the claim."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "DB-API extension cursor.connection used"
        conn = cursor.connection
    conn.register_in_adapter(_BYTEA, _hex_adapter)
    try:
        return _server_sorted(cursor, limit, lease, owner)
    finally:
        conn.register_in_adapter(_BYTEA, pg8000.converters.bytes_in)


CANDIDATES: dict[str, Callable[..., list[ClaimedRow]]] = {
    "bytea as hex, sorted in Python (before)": _sorted_by_client,
    "bytea as hex, sorted by the server": _server_sorted,
    "bytea as hex, a2b_hex adapter on the connection": _with_bytea_adapter,
    "encode(payload, 'hex') + bytes.fromhex": _text_form("encode(payload_pb, 'hex')", bytes.fromhex),
    "encode(payload, 'escape') + escape_decode": _text_form("encode(payload_pb, 'escape')", _escape_decode),
    "encode(payload, 'base64') + a2b_base64": _text_form("encode(payload_pb, 'base64')", binascii.a2b_base64),
    "store.claim: COPY TO STDOUT (FORMAT binary)": lambda cursor, limit, lease, owner: export_queue.claim(
        cursor, limit, lease, owner
    ),
}


def _backend_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _unclaim(conn: Connection) -> None:
    with transaction(conn) as cursor:
        cursor.execute("UPDATE telemetry_events_export_queue SET leased_until = NULL, lease_owner = NULL, attempts = 0")
    conn.autocommit = True
    conn.cursor().execute("VACUUM telemetry_events_export_queue")
    conn.autocommit = False


def run_candidate(conn: Connection, claim, batch: int, backend: int) -> tuple[float, float, list[ClaimedRow]]:
    """Claims every row in batches; returns client and server CPU seconds, and the rows."""
    owner = str(uuid.uuid4())
    rows: list[ClaimedRow] = []
    client_before, server_before = time.process_time(), _backend_cpu(backend)
    while True:
        with transaction(conn) as cursor:
            claimed = claim(cursor, batch, 300.0, owner)
        if not claimed:
            break
        rows.extend(claimed)
    return time.process_time() - client_before, _backend_cpu(backend) - server_before, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=10_000, help="rows per claim (TELEMETRY_EXPORT_BATCH_SIZE)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--admin-url", help="admin URL of a Postgres server (default: a throwaway cluster)")
    args = parser.parse_args()
    with benchmark_database(args.admin_url) as url, Connections(DatabaseSettings(url=url)).connection() as conn:
        payload_bytes = fill_queue(conn, args.rows)
        cursor = conn.cursor()
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
        conn.commit()
        client: dict[str, list[float]] = {name: [] for name in CANDIDATES}
        server: dict[str, list[float]] = {name: [] for name in CANDIDATES}
        expected = None
        for _ in range(args.rounds):
            for name, claim in CANDIDATES.items():
                _unclaim(conn)
                client_s, server_s, rows = run_candidate(conn, claim, args.batch, backend)
                if expected is None:
                    expected = rows
                if rows != expected:
                    raise SystemExit(f"{name}: the rows differ from the first candidate's")
                client[name].append(client_s / len(rows) * 1e6)
                server[name].append(server_s / len(rows) * 1e6)
    print(f"{args.rows:,} rows of {payload_bytes} payload bytes, {args.batch:,} a claim, {args.rounds} rounds:")
    baseline = statistics.median(client[next(iter(CANDIDATES))])
    for name in CANDIDATES:
        mine, theirs = statistics.median(client[name]), statistics.median(server[name])
        print(
            f"  {name:<48} exporter {mine:5.2f} µs/row ({mine / baseline:4.2f} x before), "
            f"Postgres backend {theirs:5.2f} µs/row"
        )


if __name__ == "__main__":
    main()
