"""The stream-ended log line tells what happened: the status the client got, with its detail, and the
events that were published, even when the client did not stay to hear it."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import grpc
import pytest
from gateway_testing import Gateway, OpenStream, PubSub, events_request, licensed_metadata, make_event
from held_publishing import Throttled, throttled_gateway

from localdev.gateway import GatewayProcess


def stream_line(process: GatewayProcess, request_id: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in process.log_records():
            if record.get("message") == "RecordEvents stream ended" and record.get("request_id") == request_id:
                return record
        time.sleep(0.1)
    raise AssertionError(f"no stream-ended line for {request_id} within {timeout} s:\n{process.log_tail()}")


@pytest.fixture(scope="module")
def throttled(pubsub: PubSub, pubsub_emulator, dev_license, service_token) -> Iterator[Throttled]:
    with throttled_gateway(pubsub, pubsub_emulator.host_port, dev_license, service_token) as gateway:
        yield gateway


def test_a_cancelled_stream_is_logged_with_what_was_published_after_it_went(
    throttled: Throttled, pubsub: PubSub, license_key: str
) -> None:
    published = [make_event(n) for n in range(200)]
    withdrawn = [make_event(n) for n in range(50)]
    throttled.holds.hold(published[0].id)  # the 200 events are being published when the client goes
    stream = OpenStream(throttled.process.address)
    stream.send(licensed_metadata(license_key, request_id="cancelled"))
    stream.send(events_request(published))
    stream.send(events_request(withdrawn))  # queued behind, on the only worker: never started
    throttled.wait_for_publish_of(published[0].id)

    stream.cancel()
    time.sleep(1.5)  # the cancellation reaches the gateway (in milliseconds) before the publish is let through
    throttled.holds.release_all()
    line = stream_line(throttled.process, "cancelled")

    pubsub.pull(throttled.subscription, [e.id for e in published])
    assert line["status"] == "CANCELLED" and "cancelled" in line["detail"]
    assert (line["events_received"], line["events_published"], line["events_failed"]) == (250, 200, 0)
    assert line["events_not_started"] == 50
    assert not {e.id for e in withdrawn} & {i for ids in throttled.holds.arrivals for i in ids}


def test_a_message_over_the_receive_limit_is_logged_with_the_status_the_client_got(
    gateway: Gateway, license_key: str
) -> None:
    limit = int(gateway.process.env["TELEMETRY_GATEWAY_MAX_RECEIVE_BYTES"])
    accepted = [make_event(n) for n in range(5)]
    oversized = events_request([make_event(1, feature="x" * (limit + 1000))])
    stream = OpenStream(gateway.address)
    stream.send(licensed_metadata(license_key, request_id="over-the-limit"))
    stream.send(events_request(accepted))
    stream.send(oversized)

    result = stream.finish_when_ended()
    line = stream_line(gateway.process, "over-the-limit")

    assert [list(r.succeeded_events) for r in result.responses] == [[e.id for e in accepted]]
    assert result.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The wording gRPC itself uses, which the exporter reads the limit from.
    size = len(oversized.SerializeToString())
    assert re.search(rf"larger than max \({size} vs\. {limit}\)", result.details), result.details
    assert (line["status"], line["detail"]) == ("RESOURCE_EXHAUSTED", result.details)
    assert (line["events_received"], line["events_published"]) == (5, 5)


def test_a_message_over_twice_the_limit_is_refused_by_grpc_itself_and_the_gateway_carries_on(
    gateway: Gateway, license_key: str
) -> None:
    # gRPC refuses it before the gateway reads it: the gateway cannot tell this apart from a client that
    # ended its stream, so it cannot log the status (docs/gateway.md says so). The client is told, though.
    limit = int(gateway.process.env["TELEMETRY_GATEWAY_MAX_RECEIVE_BYTES"])
    stream = OpenStream(gateway.address)
    stream.send(licensed_metadata(license_key, request_id="over-the-hard-limit"))
    stream.send(events_request([make_event(1, feature="x" * (2 * limit + 1000))]))

    result = stream.finish_when_ended()

    assert result.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert re.search(rf"larger than max \(\d+ vs\. {2 * limit}\)", result.details), result.details
    assert gateway.process.health() == "SERVING"
