"""End-to-end drain of a backlog, its CPU cost per event and process, and the limits it is made of, in one run.

Usage: python -m benchmarks.export_throughput [--events 200000] [--rounds 3] [--admin-url URL] [--raw-in-flight 2]

- end to end: `telemetry-export export` (one run) claims, streams to the real gateway
  (`python -m gateway_run`) which publishes to the Pub/Sub emulator, and marks the rows.
- CPU µs per event of each process during that run: the exporter (its rusage at exit), the
  gateway's main process and its workers, the Postgres cluster (postmaster and backends) and the
  emulator (read from /proc; see benchmarks/_cpu.py).
- L_pg: claiming and marking the same rows with pg8000 alone, through the exporter's store functions.
- L_ps: publishing the messages the gateway renders for these rows with google-cloud-pubsub's
  per-message client; L_raw: the same as whole PublishRequests of 1,000 through its generated client.
- S = 1/(1/L_pg + 1/L_raw): every part shares the same cores here, so this is the pipeline's limit.

Each round fills the queue afresh and measures the end-to-end run, L_pg and L_raw one after
the other; the ratio printed is the median of the rounds' own ratios, since this machine's
speed drifts between minutes more than between neighbouring measurements.

Target: end to end >= 0.7 x S.
With --admin-url the Postgres figure covers the whole server, other clients included: leave it
out for a throwaway cluster of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from google.cloud import pubsub_v1

from benchmarks import _cpu, _pubsub_limits
from benchmarks._database import benchmark_database
from benchmarks._queue_fill import event_tail_bytes, fill_queue
from gateway_run import settings as gateway_settings
from gateway_run.identity import Authenticator
from gateway_run.pubsub_messages import Outgoing, prepare
from localdev.gateway import development_license, start_gateway
from localdev.pubsub_emulator import start_emulator
from telemetry_events import pb
from telemetry_events.ids import new_event_id
from telemetry_events.redaction import policy_from
from telemetry_export.store import export_queue
from telemetry_export.store.connection import Connections, DatabaseSettings, transaction

CLI = str(Path(sys.executable).with_name("telemetry-export"))
PROJECT = "export-benchmark"
INSTANCE_ID = "benchmark"


def end_to_end(url: str, gateway_url: str, license_key: str) -> tuple[float, dict, float]:
    """One exporter run: (seconds, its JSON summary, its CPU seconds)."""
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "TELEMETRY_GATEWAY_ADDR": gateway_url,
        "TELEMETRY_LICENSE_KEY": license_key,
        "TELEMETRY_INSTANCE_ID": INSTANCE_ID,
        "TELEMETRY_EXPORT_FUNCTION_TIMEOUT": "3600",
    }
    started = time.perf_counter()
    process = subprocess.Popen([CLI, "export"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # The pipes are small (one summary line; logs go to stderr and are few): read after it exits.
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    stdout, stderr = process.communicate()
    if status != 0:
        raise SystemExit(f"the exporter failed ({status}):\n{stderr.decode()[-3000:]}")
    return elapsed, json.loads(stdout), usage.ru_utime + usage.ru_stime


def fresh_queue(conn, rows: int) -> int:
    """Empties the queue and fills it with `rows` new rows: each round starts from the same table."""
    cursor = conn.cursor()
    cursor.execute("TRUNCATE telemetry_events_export_queue")
    conn.commit()
    return fill_queue(conn, rows)


def pg_limit(url: str, rows: int, batch: int) -> float:
    """Claims and marks every row in batches, as the exporter does, with nothing in between; rows/s."""
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
        return done / (time.perf_counter() - started)


def postgres_meter(url: str) -> _cpu.Meter:
    with Connections(DatabaseSettings(url=url)).connection() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT pg_backend_pid()")
        postmaster = _cpu.postmaster_pid(cursor.fetchone()[0])
    return _cpu.Meter("Postgres (all backends)", lambda: _cpu.tree_cpu_seconds(postmaster))


def gateway_messages(rows: int, gateway_env: dict[str, str], license_key: str) -> list[Outgoing]:
    """The messages the gateway publishes for rows like the queue's, rendered by its own code."""
    settings = gateway_settings.from_env({**os.environ, **gateway_env})
    metadata = pb.RecordEventsRequestMetadata(
        request_id="benchmark",
        identifier=pb.Identifier(
            licensed_instance=pb.Identifier.LicensedInstanceIdentifier(license_key=license_key, instance_id=INSTANCE_ID)
        ),
    )
    context = Authenticator(settings).identify(metadata, None).context
    policy = policy_from(settings.allowlist)
    tail = event_tail_bytes()
    messages = []
    for _ in range(rows):
        event = pb.Event.FromString(b"\x0a\x24" + new_event_id().encode() + tail)
        message = prepare(event, context, policy, settings.max_message_bytes)
        assert isinstance(message, Outgoing)
        messages.append(message)
    return messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="end-to-end runs, each on a freshly filled queue")
    parser.add_argument("--admin-url", help="admin URL of a Postgres server (default: a throwaway cluster)")
    parser.add_argument("--raw-in-flight", type=int, default=2, help="L_raw: PublishRequests in flight at once")
    parser.add_argument("--env", action="append", default=[], help="extra gateway setting NAME=VALUE (repeatable)")
    args = parser.parse_args()
    load_before = os.getloadavg()

    emulator = start_emulator()
    os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host_port
    try:
        publisher = pubsub_v1.PublisherClient()
        topic = publisher.create_topic(name=publisher.topic_path(PROJECT, "events")).name
        per_message_topic = publisher.create_topic(name=publisher.topic_path(PROJECT, "per-message")).name
        whole_request_topic = publisher.create_topic(name=publisher.topic_path(PROJECT, "whole-requests")).name
        dev_license = development_license()
        license_key = dev_license.issue(instance_id=INSTANCE_ID)
        gateway_env = {
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "TELEMETRY_PUBSUB_TOPIC": topic,
            "TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY": dev_license.public_key,
        }
        gateway_env.update(item.split("=", 1) for item in args.env)
        with benchmark_database(args.admin_url) as url, start_gateway(gateway_env) as gateway:
            meters = [
                *_cpu.gateway_meters(gateway.pid),
                postgres_meter(url),
                _cpu.Meter("Pub/Sub emulator", lambda: _cpu.tree_cpu_seconds(emulator.process.pid)),
            ]
            messages = gateway_messages(args.events, gateway.env, license_key)
            cpu_before = {"exporter": 0.0, **dict.fromkeys(_cpu.read_all(meters), 0.0)}
            cpu_after = dict(cpu_before)
            rates, pg_rates, raw_rates = [], [], []
            for round_number in range(1, args.rounds + 1):
                with Connections(DatabaseSettings(url=url)).connection() as conn:
                    payload_size = fresh_queue(conn, args.events)
                before = _cpu.read_all(meters)
                e2e_seconds, summary, exporter_cpu = end_to_end(url, gateway.url, license_key)
                after = _cpu.read_all(meters)
                assert summary["exported"] == args.events and summary["remaining"] == 0, summary
                for name in before:
                    cpu_after[name] += after[name] - before[name]
                cpu_after["exporter"] += exporter_cpu
                rates.append(args.events / e2e_seconds)
                pg_rates.append(pg_limit(url, args.events, args.batch_size))
                raw_rates.append(_pubsub_limits.whole_request_rate(whole_request_topic, messages, args.raw_in_flight))
                s = _pubsub_limits.pipeline_limit(pg_rates[-1], raw_rates[-1])
                print(
                    f"round {round_number}: end to end {rates[-1]:8,.0f} events/s   L_pg {pg_rates[-1]:8,.0f} rows/s   "
                    f"L_raw {raw_rates[-1]:8,.0f} msgs/s   S {s:8,.0f}   end to end / S {rates[-1] / s:.2f}",
                    flush=True,
                )
        l_ps = _pubsub_limits.per_message_rate(per_message_topic, messages)
    finally:
        emulator.stop()

    ratios = [r / _pubsub_limits.pipeline_limit(p, w) for r, p, w in zip(rates, pg_rates, raw_rates, strict=True)]
    rate, l_pg, l_raw = (statistics.median(values) for values in (rates, pg_rates, raw_rates))
    message_bytes = sum(len(m.data) for m in messages) / len(messages)
    print()
    print(
        f"backlog: {args.events:,} events of {payload_size} bytes ({message_bytes:.0f} bytes published); "
        f"batches of {args.batch_size:,}; medians of {args.rounds} rounds"
    )
    print(f"end to end (queue > exporter > gateway > emulator > marked): {rate:>9,.0f} events/s")
    print(f"L_pg  (claim + mark with pg8000, the exporter's store):  {l_pg:>9,.0f} rows/s")
    print(f"L_ps  (per-message google-cloud-pubsub client):          {l_ps:>9,.0f} msgs/s")
    print(f"L_raw (PublishRequests of 1,000, {args.raw_in_flight} in flight):           {l_raw:>9,.0f} msgs/s")
    limit = _pubsub_limits.pipeline_limit(l_pg, l_raw)
    print(f"S = 1/(1/L_pg + 1/L_raw):                                {limit:>9,.0f} events/s")
    print(f"end to end / S: {statistics.median(ratios):.2f} (median of the rounds' ratios; target >= 0.7)")
    print("CPU per event during the end-to-end runs:")
    for line in _cpu.per_event_lines(cpu_before, cpu_after, args.events * args.rounds):
        print(line)
    load_after = os.getloadavg()
    print(f"load average: {load_before[0]:.2f} before, {load_after[0]:.2f} after (1 min; 2 shared cores)")


if __name__ == "__main__":
    main()
