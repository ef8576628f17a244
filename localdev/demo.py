"""The main job, locally, end to end: what `scripts/demo.sh` runs.

It starts real services on free ports (a throwaway Postgres, the Pub/Sub emulator, the
gateway, and the three functions under functions-framework), records sample events with
sensitive fields through the command line, calls the functions over HTTP as Cloud Scheduler
would, prints what arrives in Pub/Sub (redacted) and a summary. Every process it started is
stopped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pg8000.dbapi

from localdev.functions import start_function
from localdev.gateway import development_license, start_gateway
from localdev.postgres import PostgresUnavailable, start_cluster
from localdev.processes import ServiceStartError
from localdev.pubsub_emulator import EmulatorUnavailable, start_emulator
from telemetry_export.store.connection import parse_database_url

CLI = str(Path(sys.executable).with_name("telemetry-export"))
PROJECT = "telemetry-demo"


class DemoError(Exception):
    """A prerequisite is missing or a step failed; the message says which."""


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _cli(env: dict[str, str], *argv: str) -> str:
    print(f"$ telemetry-export {' '.join(argv)}", flush=True)
    result = subprocess.run([CLI, *argv], env=env, capture_output=True, text=True)
    print(result.stdout, end="", flush=True)
    if result.returncode != 0:
        raise DemoError(f"telemetry-export {' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


def _call(function, name: str) -> dict:
    status, body = function.call()
    print(f"POST {name} -> {status} {json.dumps(body)}", flush=True)
    if status != 200:
        raise DemoError(f"{name} answered {status}: {body}")
    return body


def run(events: int, shown: int) -> dict[str, int]:
    with ExitStack() as stack:
        _step("starting services")
        cluster = start_cluster()
        stack.callback(cluster.destroy)
        admin = pg8000.dbapi.connect(**parse_database_url(cluster.admin_url))
        admin.autocommit = True
        admin.cursor().execute("CREATE DATABASE telemetry")
        admin.close()
        database_url = cluster.url_for("telemetry")
        print(f"Postgres            {database_url}")

        emulator = start_emulator()
        stack.callback(emulator.stop)
        os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host_port
        from google.cloud import pubsub_v1  # after PUBSUB_EMULATOR_HOST: the clients read it when built

        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        topic = publisher.create_topic(name=publisher.topic_path(PROJECT, "telemetry-events")).name
        deadletter = publisher.create_topic(name=publisher.topic_path(PROJECT, "telemetry-events-deadletter")).name
        subscription = subscriber.create_subscription(
            name=subscriber.subscription_path(PROJECT, "demo-tail"), topic=topic
        ).name
        print(f"Pub/Sub emulator    {emulator.host_port} (topic {topic})")

        dev_license = development_license()
        gateway = stack.enter_context(
            start_gateway(
                {
                    "GOOGLE_CLOUD_PROJECT": PROJECT,
                    "TELEMETRY_PUBSUB_TOPIC": topic,
                    "TELEMETRY_PUBSUB_DEADLETTER_TOPIC": deadletter,
                    "TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY": dev_license.public_key,
                }
            )
        )
        print(f"gateway             {gateway.url} (python -m gateway_run)")

        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "TELEMETRY_GATEWAY_ADDR": gateway.url,
            "TELEMETRY_LICENSE_KEY": dev_license.issue(instance_id="demo-instance"),
            "TELEMETRY_INSTANCE_ID": "demo-instance",
            "TELEMETRY_EXTERNAL_URL": "https://sourcegraph.demo.example",
        }
        functions = {}
        for target in ("export_events", "cleanup_exported_events", "report_queue_metrics"):
            functions[target] = stack.enter_context(start_function(target, env))
            print(f"{target:<19} {functions[target].url} (functions-framework)")

        _step("recording sample events (sensitive fields included)")
        _cli(env, "db", "migrate")
        _cli(env, "record", "--sample", str(events))

        _step("calling the functions as Cloud Scheduler would")
        exported = _call(functions["export_events"], "export_events")
        _call(functions["cleanup_exported_events"], "cleanup_exported_events")
        metrics = _call(functions["report_queue_metrics"], "report_queue_metrics")

        _step(f"events arriving in Pub/Sub (first {shown}, redacted)")
        published = 0
        deadline = time.monotonic() + 60
        while published < exported["exported"] and time.monotonic() < deadline:
            response = subscriber.pull(subscription=subscription, max_messages=1000, timeout=10)
            for received in response.received_messages:
                if published < shown:
                    body = json.loads(received.message.data)
                    print(json.dumps(body["event"], sort_keys=True))
                published += 1
            if response.received_messages:
                subscriber.acknowledge(
                    subscription=subscription, ack_ids=[r.ack_id for r in response.received_messages]
                )
        summary = {
            "recorded": events,
            "exported": exported["exported"],
            "published": published,
            "quarantined": exported["quarantined"],
            "backlog": metrics.get("queue_backlog", exported["remaining"]),
        }
        _step("summary")
        for key, value in summary.items():
            print(f"{key:<12} {value:,}")
        return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000, help="sample events to record (default 1000)")
    parser.add_argument("--show", type=int, default=3, help="published events to print (default 3)")
    args = parser.parse_args()
    started = time.monotonic()
    try:
        summary = run(args.events, args.show)
    except (DemoError, PostgresUnavailable, EmulatorUnavailable, ServiceStartError) as error:
        print(f"demo: error: {error}", file=sys.stderr)
        return 1
    print(f"done in {time.monotonic() - started:.1f} s; every process started here has been stopped")
    return 0 if summary["published"] == summary["recorded"] else 1


if __name__ == "__main__":
    sys.exit(main())
