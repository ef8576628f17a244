"""Exporter fixtures: queue helpers, and the real gateway publishing into the emulator."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from google.cloud import pubsub_v1

from localdev.gateway import development_license, start_gateway
from localdev.scripted_gateway import ScriptedGateway
from telemetry_events.export_mode import ExportScope
from telemetry_events.redaction import policy_from
from telemetry_export.exporter import ExportReport, run_export
from telemetry_export.gateway_client import open_channel, parse_gateway_addr
from telemetry_export.recording import record_events
from telemetry_export.sample_events import sample_events
from telemetry_export.settings import ExporterSettings, GatewayIdentity

PROJECT = "exporter-tests"
POLICY = policy_from()


def record_samples(conn, count: int, seed: int = 1) -> list[str]:
    events = list(sample_events(count, seed=seed))
    record_events(conn, events, policy_from(), ExportScope())
    return [e.id for e in events]


def queue_states(conn) -> dict[str, int]:
    cursor = conn.cursor()
    cursor.execute(
        "SELECT count(*) FILTER (WHERE exported_at IS NOT NULL), count(*) FILTER (WHERE quarantined_at IS NOT NULL),"
        " count(*) FILTER (WHERE exported_at IS NULL AND quarantined_at IS NULL),"
        " count(*) FILTER (WHERE leased_until IS NOT NULL) FROM telemetry_events_export_queue"
    )
    exported, quarantined, waiting, leased = cursor.fetchone()
    conn.commit()
    return {"exported": exported, "quarantined": quarantined, "waiting": waiting, "leased": leased}


def exporter_settings(gateway_url: str, **overrides) -> ExporterSettings:
    values = {
        "gateway_addr": gateway_url,
        "batch_size": 1_000,
        "identity": GatewayIdentity(instance_id="test-instance", external_url="https://sg.example.com"),
        **overrides,
    }
    return ExporterSettings(**values)


def export_to(conn, gateway_url: str, **overrides) -> ExportReport:
    """One exporter run, in this process, to the gateway at `gateway_url` (exporter_settings' defaults)."""
    settings = exporter_settings(gateway_url, **overrides)
    target = parse_gateway_addr(gateway_url)
    return run_export(conn, settings, POLICY, lambda: open_channel(target))


@pytest.fixture
def scripted():
    """Starts scripted gateways (real gRPC servers on real ports) and stops them after the test."""
    servers: list[ScriptedGateway] = []

    def start(**kwargs) -> ScriptedGateway:
        server = ScriptedGateway(**kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@dataclass
class LiveGateway:
    url: str
    subscription: str
    license_key: str
    process: object

    def pull(self, expected: int, timeout: float = 120.0) -> list[pubsub_v1.types.PubsubMessage]:
        """Pulls (and acknowledges) until `expected` messages arrived or `timeout` passed."""
        subscriber = pubsub_v1.SubscriberClient()
        messages: list = []
        deadline = time.monotonic() + timeout
        while len(messages) < expected and time.monotonic() < deadline:
            response = subscriber.pull(subscription=self.subscription, max_messages=1000, timeout=10)
            if not response.received_messages:
                time.sleep(0.2)
                continue
            messages.extend(r.message for r in response.received_messages)
            subscriber.acknowledge(
                subscription=self.subscription, ack_ids=[r.ack_id for r in response.received_messages]
            )
        return messages


def _topic_with_subscription(name: str) -> tuple[str, str]:
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.create_topic(name=publisher.topic_path(PROJECT, name)).name
    subscription = subscriber.create_subscription(
        name=subscriber.subscription_path(PROJECT, f"{name}-all"), topic=topic, ack_deadline_seconds=60
    ).name
    return topic, subscription


@pytest.fixture(scope="module")
def live_gateway(pubsub_emulator) -> Iterator[LiveGateway]:
    """`python -m gateway_run` on the emulator, with a license public key; a fresh topic per module."""
    suffix = uuid.uuid4().hex[:8]
    topic, subscription = _topic_with_subscription(f"events-{suffix}")
    deadletter, _ = _topic_with_subscription(f"deadletter-{suffix}")
    dev_license = development_license()
    env = {
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "TELEMETRY_PUBSUB_TOPIC": topic,
        "TELEMETRY_PUBSUB_DEADLETTER_TOPIC": deadletter,
        "TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY": dev_license.public_key,
        "PUBSUB_EMULATOR_HOST": pubsub_emulator.host_port,
    }
    with start_gateway(env) as process:
        yield LiveGateway(process.url, subscription, dev_license.issue(instance_id="test-instance"), process)


def message_body(message) -> dict:
    return json.loads(message.data)
