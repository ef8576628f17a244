"""End-to-end drain of a backlog against the two limits it is made of, measured in one run.

Usage: python -m benchmarks.export_throughput [--events 200000] [--admin-url URL]

- end to end: `telemetry-export export` (one run) claims, streams to the real gateway
  (`python -m gateway_run`) which publishes to the Pub/Sub emulator, and marks the rows.
- L_pg: claiming and marking the same number of rows with pg8000 alone (the store's SQL).
- L_ps: publishing the same payloads with google-cloud-pubsub alone, to the same emulator.

Target: end to end / min(L_pg, L_ps) >= 0.5 (stretch 0.7).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from google.cloud import pubsub_v1

from benchmarks._database import benchmark_database
from benchmarks._queue_fill import event_tail_bytes, fill_queue
from localdev.gateway import development_license, start_gateway
from localdev.pubsub_emulator import start_emulator
from telemetry_export.store import export_queue
from telemetry_export.store.connection import Connections, DatabaseSettings, transaction

CLI = str(Path(sys.executable).with_name("telemetry-export"))
PROJECT = "export-benchmark"


def end_to_end(url: str, gateway_url: str, license_key: str) -> tuple[float, dict]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "TELEMETRY_GATEWAY_ADDR": gateway_url,
        "TELEMETRY_LICENSE_KEY": license_key,
        "TELEMETRY_INSTANCE_ID": "benchmark",
        "TELEMETRY_EXPORT_FUNCTION_TIMEOUT": "3600",
    }
    started = time.perf_counter()
    result = subprocess.run([CLI, "export"], env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, json.loads(result.stdout)


def pg_limit(url: str, rows: int, batch: int) -> float:
    """Claims and marks every row in batches, as the exporter does, with nothing in between."""
    with Connections(DatabaseSettings(url=url)).connection() as conn:
        with transaction(conn) as cursor:
            cursor.execute("UPDATE telemetry_events_export_queue SET exported_at = NULL, attempts = 0")
        owner = str(uuid.uuid4())
        started = time.perf_counter()
        done = 0
        while done < rows:
            with transaction(conn) as cursor:
                claimed = export_queue.claim(cursor, batch, 300, owner)
            if not claimed:
                break
            with transaction(conn) as cursor:
                export_queue.mark_exported(cursor, [row.id for row in claimed])
            done += len(claimed)
        return time.perf_counter() - started


def pubsub_limit(topic: str, rows: int, payload: bytes) -> float:
    publisher = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=1000, max_bytes=9_000_000, max_latency=0.05)
    )
    started = time.perf_counter()
    futures = [publisher.publish(topic, payload, **{"event.id": str(n)}) for n in range(rows)]
    for future in futures:
        future.result()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--admin-url", help="admin URL of a Postgres server (default: a throwaway cluster)")
    args = parser.parse_args()

    emulator = start_emulator()
    os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host_port
    try:
        publisher = pubsub_v1.PublisherClient()
        topic = publisher.create_topic(name=publisher.topic_path(PROJECT, "events")).name
        probe_topic = publisher.create_topic(name=publisher.topic_path(PROJECT, "probe")).name
        dev_license = development_license()
        gateway_env = {
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "TELEMETRY_PUBSUB_TOPIC": topic,
            "TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY": dev_license.public_key,
        }
        with benchmark_database(args.admin_url) as url, start_gateway(gateway_env) as gateway:
            with Connections(DatabaseSettings(url=url)).connection() as conn:
                payload_size = fill_queue(conn, args.events)
            e2e_seconds, summary = end_to_end(url, gateway.url, dev_license.issue(instance_id="benchmark"))
            assert summary["exported"] == args.events and summary["remaining"] == 0, summary
            pg_seconds = pg_limit(url, args.events, args.batch_size)
            ps_seconds = pubsub_limit(probe_topic, args.events, b"\x0a\x24" + b"0" * 36 + event_tail_bytes())
    finally:
        emulator.stop()

    rate = args.events / e2e_seconds
    l_pg, l_ps = args.events / pg_seconds, args.events / ps_seconds
    print(f"backlog: {args.events:,} events of {payload_size} bytes; batches of {args.batch_size:,}")
    print(f"end to end (queue > exporter > gateway > emulator > marked): {rate:>9,.0f} events/s ({e2e_seconds:.1f} s)")
    print(f"L_pg (claim + mark with pg8000 alone):                   {l_pg:>9,.0f} rows/s ({pg_seconds:.1f} s)")
    print(f"L_ps (publish with google-cloud-pubsub alone):           {l_ps:>9,.0f} msgs/s ({ps_seconds:.1f} s)")
    print(f"ratio end to end / min(L_pg, L_ps): {rate / min(l_pg, l_ps):.2f} (target >= 0.5, stretch 0.7)")


if __name__ == "__main__":
    main()
