"""The main job, locally, end to end: what `scripts/demo.sh` runs.

It starts a throwaway Postgres, migrates it, records sample events (sensitive fields
included) through the real command line, and shows what the queue holds: the counts, and
that the queued payloads are redacted. Every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pg8000.dbapi

from localdev.postgres import PostgresUnavailable, start_cluster
from telemetry_events import pb
from telemetry_export.store.connection import parse_database_url

CLI = str(Path(sys.executable).with_name("telemetry-export"))


def _cli(env: dict[str, str], *argv: str) -> None:
    print(f"$ telemetry-export {' '.join(argv)}", flush=True)
    subprocess.run([CLI, *argv], env=env, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000, help="sample events to record (default 1000)")
    args = parser.parse_args()
    started = time.monotonic()
    try:
        cluster = start_cluster()
    except PostgresUnavailable as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
    try:
        admin = pg8000.dbapi.connect(**parse_database_url(cluster.admin_url))
        admin.autocommit = True
        admin.cursor().execute("CREATE DATABASE telemetry")
        admin.close()
        url = cluster.url_for("telemetry")
        env = {**os.environ, "DATABASE_URL": url}
        print(f"Postgres: {url} (throwaway, removed at the end)")
        _cli(env, "db", "migrate")
        _cli(env, "record", "--sample", str(args.events))
        _summarise(url)
    finally:
        cluster.destroy()
    print(f"done in {time.monotonic() - started:.1f} s")
    return 0


def _summarise(url: str) -> None:
    conn = pg8000.dbapi.connect(**parse_database_url(url))
    cursor = conn.cursor()
    cursor.execute("SELECT count(*) FROM event_logs")
    logged = cursor.fetchone()[0]
    cursor.execute("SELECT payload_pb FROM telemetry_events_export_queue")
    payloads = [pb.Event.FromString(row[0]) for row in cursor.fetchall()]
    conn.close()
    leaking = [
        e.id for e in payloads if e.HasField("marketing_tracking") or set(e.parameters.private_metadata) - {"testField"}
    ]
    print(f"event_logs rows: {logged:,} (local, unredacted)")
    print(f"queued for export: {len(payloads):,}")
    print(f"queued payloads with marketing tracking or non-allowlisted private metadata: {len(leaking)}")


if __name__ == "__main__":
    sys.exit(main())
