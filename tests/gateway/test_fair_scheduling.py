"""The workers are shared between streams in turn, and no accepted message waits without bound to start.

The gateway runs throttled, with publishes the test can hold (held_publishing.py): a held batch keeps
the only worker busy while the other streams queue, and the order of the publish calls is the order
in which the gateway started the batches.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import pytest
from gateway_testing import (
    OpenStream,
    PubSub,
    StreamResult,
    events_request,
    licensed_metadata,
    make_event,
    managed_metadata,
    record_event,
)
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from held_publishing import Throttled, throttled_gateway

from telemetry_events import pb

# Time for the gateway to read what the clients sent: reading takes milliseconds, this leaves plenty.
SETTLE = 2.0
EVENTS_PER_BATCH = 20


@pytest.fixture(scope="module")
def pubsub_upstream(pubsub: PubSub, pubsub_emulator) -> str:
    return pubsub_emulator.host_port


@pytest.fixture(scope="module")
def throttled(pubsub, pubsub_upstream, dev_license, service_token) -> Iterator[Throttled]:
    with throttled_gateway(pubsub, pubsub_upstream, dev_license, service_token) as gateway:
        yield gateway


def batch() -> list[pb.Event]:
    return [make_event(n) for n in range(EVENTS_PER_BATCH)]


@dataclass
class Reading:
    times: list[float]  # when each response came
    acknowledged: list[str]
    result: StreamResult


def read_all(stream: OpenStream, expected: int) -> Reading:
    """Reads `expected` responses, noting when each came, then ends the stream."""
    times, acknowledged = [], []
    for _ in range(expected):
        acknowledged.extend(stream.receive().succeeded_events)
        times.append(time.monotonic())
    return Reading(times, acknowledged, stream.finish())


def test_streams_are_served_in_turn_whatever_their_backlog(throttled: Throttled, license_key: str) -> None:
    names = ("A", "B", "C")
    batches = {f"{name}{n}": batch() for name in names for n in range(1, 5)}
    throttled.holds.hold(batches["A1"][0].id)  # the only worker is busy with A1 while everything queues
    streams = {name: OpenStream(throttled.process.address) for name in names}
    for name, stream in streams.items():
        stream.send(licensed_metadata(license_key, request_id=f"turns-{name}"))
        for n in range(1, 5):
            stream.send(events_request(batches[f"{name}{n}"]))
        time.sleep(SETTLE / 3)
    time.sleep(SETTLE)

    throttled.holds.release_all()
    with ThreadPoolExecutor(len(streams)) as pool:
        readings = dict(zip(names, pool.map(lambda stream: read_all(stream, 4), streams.values()), strict=True))

    for name, reading in readings.items():
        assert reading.result.code == grpc.StatusCode.OK, reading.result.details
        assert reading.acknowledged == [e.id for n in range(1, 5) for e in batches[f"{name}{n}"]]
    order = throttled.start_order(batches)
    assert order[:2] == ["A1", "A2"]  # A1 ran while the others queued; then A, first in the ring, had its turn
    rounds = [{label[0] for label in order[i : i + 3]} for i in range(2, 11, 3)]
    assert rounds == [{"B", "C", "A"}, {"B", "C", "A"}, {"B", "C"}], order
    for name in names:
        assert [label for label in order if label[0] == name] == [f"{name}{n}" for n in range(1, 5)]


def test_a_small_stream_finishes_before_a_big_ones_backlog(throttled: Throttled, license_key: str) -> None:
    big = {f"big{n}": batch() for n in range(1, 11)}
    small = batch()
    throttled.holds.hold(big["big1"][0].id)
    big_stream = OpenStream(throttled.process.address)
    big_stream.send(licensed_metadata(license_key, request_id="big"))
    for events in big.values():
        big_stream.send(events_request(events))
    time.sleep(SETTLE)
    small_stream = OpenStream(throttled.process.address)
    small_stream.send(licensed_metadata(license_key, request_id="small"))
    small_stream.send(events_request(small))
    time.sleep(SETTLE)

    throttled.holds.release_all()
    with ThreadPoolExecutor(2) as pool:
        big_reading, small_reading = pool.submit(read_all, big_stream, len(big)), pool.submit(read_all, small_stream, 1)
        big_done, small_done = big_reading.result(), small_reading.result()

    assert (big_done.result.code, small_done.result.code) == (grpc.StatusCode.OK, grpc.StatusCode.OK)
    assert small_done.acknowledged == [e.id for e in small]
    assert big_done.acknowledged == [e.id for events in big.values() for e in events]
    order = throttled.start_order({**big, "small": small})
    # big1 was running and big2 next in the ring when the small stream came; first come, first served
    # would have started big2 to big4 (queued before it) first.
    assert order.index("small") <= 2, order
    assert small_done.times[-1] < big_done.times[-2], "the small stream waited for the big one's backlog"


def status_details(result: StreamResult) -> error_details_pb2.RetryInfo:
    assert result.error is not None
    status = rpc_status.from_call(result.error)
    assert status is not None, "no grpc-status-details-bin trailer"
    (detail,) = status.details
    retry = error_details_pb2.RetryInfo()
    assert detail.Unpack(retry), detail.type_url
    return retry


def test_a_message_that_cannot_start_in_time_ends_the_stream_busy_after_answering_what_started(
    pubsub, pubsub_upstream, dev_license, service_token, license_key: str
) -> None:
    started, waiting, behind = batch(), batch(), batch()
    with throttled_gateway(
        pubsub, pubsub_upstream, dev_license, service_token, TELEMETRY_GATEWAY_MAX_QUEUE_WAIT="1"
    ) as busy:
        # `started` holds the only worker for 4 s (four times the wait allowed), `waiting` queues behind it.
        busy.holds.hold(started[0].id, release_after=4.0)
        stream = OpenStream(busy.process.address)
        stream.send(licensed_metadata(license_key, request_id="busy"))
        for events in (started, waiting, behind):
            stream.send(events_request(events))
        busy.wait_for_publish_of(started[0].id)
        unary = record_event(
            busy.process.address,
            pb.RecordEventRequest(metadata=managed_metadata(), event=make_event(1)),
            service_token.headers,
        )

        result = stream.finish_when_ended()
        after = batch()  # a healthy stream afterwards: the worker has run everything queued before it
        follow_up = OpenStream(busy.process.address)
        follow_up.send(licensed_metadata(license_key))
        follow_up.send(events_request(after))
        assert list(follow_up.receive().succeeded_events) == [e.id for e in after]
        follow_up.finish()
        published = {event_id for event_ids in busy.holds.arrivals for event_id in event_ids}
        line = next(
            r
            for r in busy.process.log_records()
            if r.get("message") == "RecordEvents stream ended" and r.get("request_id") == "busy"
        )

    assert result.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert result.details.startswith("gateway busy: an events message could not start within 1 s"), result.details
    assert 1 <= status_details(result).retry_delay.seconds <= 60
    assert [list(r.succeeded_events) for r in result.responses] == [[e.id for e in started]]
    assert {e.id for e in started + after} <= published
    assert not {e.id for e in waiting + behind} & published, "an event that never started was published"
    assert (line["status"], line["events_published"], line["events_not_started"]) == (
        "RESOURCE_EXHAUSTED",
        EVENTS_PER_BATCH,
        2 * EVENTS_PER_BATCH,
    )
    assert line["detail"].startswith("gateway busy")
    assert unary[0] == grpc.StatusCode.RESOURCE_EXHAUSTED and unary[1].startswith("gateway busy: the event")
