"""The main job, locally, end to end: what `scripts/demo.sh` runs.

It starts real services on free ports (a throwaway Postgres, the Pub/Sub emulator, the
gateway, and the three functions under functions-framework), records sample events with
sensitive fields through the command line, calls the functions over HTTP as Cloud Scheduler
would, shows a few events as recorded locally (`event_logs`, unredacted) beside the same events
as they arrived in Pub/Sub, and prints a summary. Every process it started is stopped at the
end, whatever happens.
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
from localdev.pubsub_admin import PubSubAdmin
from localdev.pubsub_emulator import EmulatorUnavailable, start_emulator
from localdev.recorded_vs_published import pairs, side_by_side
from telemetry_export.store import inspection
from telemetry_export.store.connection import parse_database_url, transaction

CLI = str(Path(sys.executable).with_name("telemetry-export"))
PROJECT = "telemetry-demo"
TARGETS = ("export_events", "cleanup_exported_events", "report_queue_metrics")
# The services table's first column fits its longest label.
LABEL_WIDTH = max(len(label) for label in ("Postgres", "Pub/Sub emulator", "gateway", *TARGETS))
# Sample events of this name have an allowlisted private metadata key: one kept beside ones removed.
ALLOWLISTED_SAMPLE = "example.example"


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


def _service(label: str, where: str) -> None:
    print(f"{label:<{LABEL_WIDTH}}  {where}", flush=True)


def _events_to_show(database_url: str, count: int) -> list[dict]:
    """The first recorded events, one of them with an allowlisted key when there is one: kept beside removed."""
    conn = pg8000.dbapi.connect(**parse_database_url(database_url))
    try:
        with transaction(conn) as cursor:
            recorded = inspection.recorded_events(cursor, 100)
    finally:
        conn.close()
    allowlisted = [row for row in recorded if row["name"] == ALLOWLISTED_SAMPLE][:1]
    others = [row for row in recorded if row not in allowlisted]
    chosen = others[: max(count - len(allowlisted), 0)] + allowlisted
    return chosen[:count]


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
        _service("Postgres", database_url)

        emulator = start_emulator()
        stack.callback(emulator.stop)
        os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host_port
        pubsub = PubSubAdmin(emulator.host_port)
        topic, subscription = pubsub.create(PROJECT, "telemetry-events", "demo-tail")
        deadletter = pubsub.publisher.create_topic(
            name=pubsub.publisher.topic_path(PROJECT, "telemetry-events-deadletter")
        ).name
        _service("Pub/Sub emulator", f"{emulator.host_port} (topic {topic})")

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
        _service("gateway", f"{gateway.url} (python -m gateway_run)")

        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "TELEMETRY_GATEWAY_ADDR": gateway.url,
            "TELEMETRY_LICENSE_KEY": dev_license.issue(instance_id="demo-instance"),
            "TELEMETRY_INSTANCE_ID": "demo-instance",
            "TELEMETRY_EXTERNAL_URL": "https://sourcegraph.demo.example",
        }
        functions = {}
        for target in TARGETS:
            functions[target] = stack.enter_context(start_function(target, env))
            _service(target, f"{functions[target].url} (functions-framework)")

        _step("recording sample events (sensitive fields included)")
        _cli(env, "db", "migrate")
        _cli(env, "record", "--sample", str(events))

        _step("calling the functions as Cloud Scheduler would")
        exported = _call(functions["export_events"], "export_events")
        _call(functions["cleanup_exported_events"], "cleanup_exported_events")
        metrics = _call(functions["report_queue_metrics"], "report_queue_metrics")

        published: dict[str, dict] = {}
        deadline = time.monotonic() + 60
        while len(published) < exported["exported"] and time.monotonic() < deadline:
            for message in pubsub.pull_once(subscription, timeout=10):
                published[message.attributes["event.id"]] = json.loads(message.data)["event"]

        _step(f"what redaction removed: {shown} event(s) as recorded locally and as published")
        print("REMOVED: not in the published event (private metadata not allowlisted, marketing tracking)\n")
        for recorded in _events_to_show(database_url, shown):
            event = published.get(recorded["event_id"])
            if event is None:
                print(f"event {recorded['event_id']}: not among the published messages\n")
            else:
                print(side_by_side(recorded["event_id"], pairs(recorded, event)) + "\n")
        summary = {
            "recorded": events,
            "exported": exported["exported"],
            "published": len(published),
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
    parser.add_argument("--show", type=int, default=3, help="events to show recorded beside published (default 3)")
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
