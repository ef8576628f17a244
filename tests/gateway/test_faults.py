"""Faults during a stream: Pub/Sub going away and coming back, SIGTERM, a worker process dying.

Whatever happens, an acknowledged event is in Pub/Sub, and the gateway neither crashes nor
acknowledges what it did not publish.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from gateway_testing import (
    OpenStream,
    PubSub,
    ServiceToken,
    events_request,
    gateway_env,
    licensed_metadata,
    make_event,
)

from localdev.gateway import DevelopmentLicense, start_gateway
from localdev.pubsub_emulator import RestartableEmulator


@pytest.fixture
def own_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[RestartableEmulator]:
    """Clients built during the test point at this emulator rather than the session's."""
    emulator = RestartableEmulator()
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.host_port)
    try:
        yield emulator
    finally:
        emulator.stop()


def batch(count: int, start: int = 0) -> list:
    return [make_event(n) for n in range(start, start + count)]


def test_pubsub_stopping_mid_stream_leaves_events_unacknowledged_and_publishing_resumes_after_restart(
    own_emulator: RestartableEmulator, dev_license: DevelopmentLicense, service_token: ServiceToken, license_key: str
) -> None:
    topic_id, subscription = PubSub().topic("outage")
    env = gateway_env(
        dev_license,
        service_token,
        TELEMETRY_PUBSUB_TOPIC=topic_id,
        PUBSUB_EMULATOR_HOST=own_emulator.host_port,
        TELEMETRY_GATEWAY_PUBLISH_TIMEOUT="3",
        TELEMETRY_GATEWAY_HEALTH_INTERVAL="0.3",
    )
    before, during, after = batch(20), batch(20, 100), batch(20, 200)

    with start_gateway(env) as gateway:
        stream = OpenStream(gateway.address)
        stream.send(licensed_metadata(license_key))
        stream.send(events_request(before))
        assert list(stream.receive().succeeded_events) == [e.id for e in before]

        own_emulator.stop()
        stream.send(events_request(during))
        assert list(stream.receive().succeeded_events) == []  # nothing published, nothing acknowledged
        assert gateway.wait_for_health("NOT_SERVING", timeout=10) == "NOT_SERVING"
        assert gateway.process.poll() is None

        own_emulator.start()
        pubsub = PubSub()
        pubsub.create(topic_id)
        gateway.wait_for_health("SERVING", timeout=15)
        stream.send(events_request(during))  # as the exporter does: the unacknowledged events again
        stream.send(events_request(after))
        assert list(stream.receive().succeeded_events) == [e.id for e in during]
        assert list(stream.receive().succeeded_events) == [e.id for e in after]
        result = stream.finish()
        records = gateway.log_records()

    assert result.code == grpc.StatusCode.OK, result.details
    pubsub.pull(subscription, [e.id for e in during + after])
    stream_line = [r for r in records if r.get("message") == "RecordEvents stream ended"][-1]
    assert (stream_line["events_failed"], stream_line["events_published"]) == (20, 60)


# Cloud Run sends SIGKILL this long after SIGTERM. The tests give the gateway a grace of 3 s and check
# the order of what it did, and that it exited by itself well before the kill.
CLOUD_RUN_KILL_SECONDS = 10.0
GRACE = "3"


def in_order(records: list[dict], *messages: str) -> bool:
    """Whether the log has these messages, each first logged after the one before."""
    logged = [r.get("message") for r in records]
    positions = [logged.index(message) if message in logged else -1 for message in messages]
    return -1 not in positions and positions == sorted(positions)


def test_sigterm_during_a_stream_drains_and_exits_within_the_grace(
    pubsub: PubSub, dev_license: DevelopmentLicense, service_token: ServiceToken, license_key: str
) -> None:
    topic_id, subscription = pubsub.topic("sigterm")
    env = gateway_env(
        dev_license, service_token, TELEMETRY_PUBSUB_TOPIC=topic_id, TELEMETRY_GATEWAY_SHUTDOWN_GRACE=GRACE
    )
    batches = [batch(400, 1000 * n) for n in range(25)]

    with start_gateway(env) as gateway:
        stream = OpenStream(gateway.address)
        stream.send(licensed_metadata(license_key))
        for events in batches:
            stream.send(events_request(events))
        first = stream.receive()
        sent_at = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        rest = stream.finish()
        status = gateway.process.wait(timeout=15)
        exited_after = time.monotonic() - sent_at
        records = gateway.log_records()

    assert status == 0
    assert exited_after < CLOUD_RUN_KILL_SECONDS, f"exited {exited_after:.1f} s after SIGTERM"
    assert in_order(records, "stopping", "RecordEvents stream ended", "stopped")
    assert rest.code == grpc.StatusCode.UNAVAILABLE, rest.details  # drained, then told to reconnect
    assert rest.responses, "the batches in flight at SIGTERM were not answered"
    acknowledged = list(first.succeeded_events) + rest.acknowledged
    assert 0 < len(acknowledged) < sum(len(b) for b in batches)
    assert set(pubsub.pull(subscription, acknowledged)) == set(acknowledged)
    messages = [r.get("message") for r in records]
    assert "stopping" in messages and "stopped" in messages
    (stream_line,) = [r for r in records if r.get("message") == "RecordEvents stream ended"]
    assert stream_line["shutdown"] is True and stream_line["status"] == "UNAVAILABLE"
    assert stream_line["events_published"] == len(acknowledged)


def test_sigterm_exits_within_the_grace_even_when_pubsub_hangs(
    dev_license: DevelopmentLicense, service_token: ServiceToken, license_key: str
) -> None:
    # A "Pub/Sub" that accepts connections and never answers: every publish hangs.
    with socket.create_server(("127.0.0.1", 0)) as blackhole:
        env = gateway_env(
            dev_license,
            service_token,
            TELEMETRY_PUBSUB_TOPIC="events",
            PUBSUB_EMULATOR_HOST=f"127.0.0.1:{blackhole.getsockname()[1]}",
            TELEMETRY_GATEWAY_SHUTDOWN_GRACE=GRACE,
        )
        with start_gateway(env, require_serving=False) as gateway:
            assert gateway.health() == "NOT_SERVING"
            stream = OpenStream(gateway.address)
            stream.send(licensed_metadata(license_key))
            stream.send(events_request(batch(50)))
            time.sleep(1.0)  # the batch is now stuck publishing
            sent_at = time.monotonic()
            gateway.process.send_signal(signal.SIGTERM)
            result = stream.finish()
            status = gateway.process.wait(timeout=15)
            exited_after = time.monotonic() - sent_at
            records = gateway.log_records()

    assert status == 0
    assert exited_after < CLOUD_RUN_KILL_SECONDS, f"exited {exited_after:.1f} s after SIGTERM"
    # The stream could not drain (its batch hangs): it was cut at the streams' share of the grace, the
    # workers were ended at the end of it, and the stream's line counts the batch as not published.
    assert in_order(records, "stopping", "RecordEvents stream ended", "stopped")
    (stream_line,) = [r for r in records if r.get("message") == "RecordEvents stream ended"]
    assert (stream_line["status"], stream_line["shutdown"]) == ("CANCELLED", True)
    assert (stream_line["events_published"], stream_line["events_failed"]) == (0, 50)
    assert result.acknowledged == []
    assert result.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), result.details


def worker_pids(parent: int) -> list[int]:
    """The pool's worker processes among `parent`'s children (not multiprocessing's resource tracker)."""
    pids = []
    for task in Path(f"/proc/{parent}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in cmdline:
                pids.append(int(child))
    return pids


def test_a_dead_worker_costs_only_its_batch(
    pubsub: PubSub, dev_license: DevelopmentLicense, service_token: ServiceToken, license_key: str
) -> None:
    topic_id, subscription = pubsub.topic("dead-worker")
    env = gateway_env(dev_license, service_token, TELEMETRY_PUBSUB_TOPIC=topic_id)
    first, second, third = batch(10), batch(10, 100), batch(10, 200)

    with start_gateway(env) as gateway:
        stream = OpenStream(gateway.address)
        stream.send(licensed_metadata(license_key))
        stream.send(events_request(first))
        assert list(stream.receive().succeeded_events) == [e.id for e in first]
        (worker,) = worker_pids(gateway.pid)
        os.kill(worker, signal.SIGKILL)
        time.sleep(0.5)  # the pool notices its worker is gone
        stream.send(events_request(second))
        assert list(stream.receive().succeeded_events) == []
        stream.send(events_request(third))
        assert list(stream.receive().succeeded_events) == [e.id for e in third]
        assert stream.finish().code == grpc.StatusCode.OK
        assert gateway.wait_for_health("SERVING", timeout=5) == "SERVING"
        assert worker_pids(gateway.pid) != [worker]

    pubsub.pull(subscription, [e.id for e in first + third])
