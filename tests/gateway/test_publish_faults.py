"""Pub/Sub failing for some requests and not others, and Pub/Sub holding requests: a real gateway publishing
through a recording, refusing, holding pass-through (localdev/pubsub_front.py) to the real emulator.

What holds: an event is acknowledged only once its own PublishRequest (events or dead letters)
succeeded; a failed request leaves exactly its events unacknowledged, never dead-letters them,
and costs no other event; and what the gateway holds for Pub/Sub is bounded by its settings.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest
from gateway_testing import (
    OpenStream,
    PubSub,
    ServiceToken,
    StreamResult,
    events_request,
    gateway_env,
    licensed_metadata,
    make_event,
    managed_metadata,
    record_event,
)

from localdev.gateway import DevelopmentLicense, GatewayProcess, start_gateway
from localdev.pubsub_front import Action, PublishCall, PubSubFront
from telemetry_events import pb


@dataclass
class Rig:
    front: PubSubFront
    gateway: GatewayProcess
    subscription: str
    deadletter_subscription: str
    topic: str
    deadletter_topic: str


@pytest.fixture
def rig_factory(
    pubsub: PubSub, pubsub_emulator, dev_license: DevelopmentLicense, service_token: ServiceToken
) -> Iterator[Callable[..., Rig]]:
    """Starts a gateway whose Pub/Sub is a front to the session's emulator, on topics of its own."""
    started: list[tuple[PubSubFront, GatewayProcess]] = []

    def make(deadletter: bool = True, **settings: str) -> Rig:
        topic_id, subscription = pubsub.topic("front-events")
        deadletter_id, deadletter_subscription = pubsub.topic("front-deadletter")
        front = PubSubFront(pubsub_emulator.host_port, error_code=grpc.StatusCode.FAILED_PRECONDITION).start()
        env = gateway_env(
            dev_license,
            service_token,
            TELEMETRY_PUBSUB_TOPIC=topic_id,
            PUBSUB_EMULATOR_HOST=front.host_port,
            **({"TELEMETRY_PUBSUB_DEADLETTER_TOPIC": deadletter_id} if deadletter else {}),
            **settings,
        )
        gateway = start_gateway(env)
        started.append((front, gateway))
        return Rig(front, gateway, subscription, deadletter_subscription, topic_id, deadletter_id)

    yield make
    for front, gateway in started:
        gateway.stop()
        front.stop()


def publishes_to(rig: Rig, topic_id: str) -> list[PublishCall]:
    return [call for call in rig.front.calls if call.topic.endswith("/" + topic_id)]


def stream_line(gateway: GatewayProcess) -> dict:
    return [r for r in gateway.log_records() if r.get("message") == "RecordEvents stream ended"][-1]


def one_batch(rig: Rig, license_key: str, events: list[pb.Event]) -> tuple[pb.RecordEventsResponse, StreamResult]:
    """A licensed stream sending one batch: its answer, then how the stream ended once the sending side closed."""
    stream = OpenStream(rig.gateway.address)
    stream.send(licensed_metadata(license_key))
    stream.send(events_request(events))
    answer = stream.receive()
    return answer, stream.finish()


def test_pubsub_refusing_one_whole_request_leaves_exactly_its_events_unacknowledged(
    rig_factory: Callable[..., Rig], pubsub: PubSub, license_key: str
) -> None:
    rig = rig_factory()
    # 1,500 events in one message become two PublishRequests (1,000 + 500); the second is refused.
    first, second = [make_event(n) for n in range(1500)], [make_event(n) for n in range(300)]
    third = [make_event(n) for n in range(300, 400)]
    refused_ids = {e.id for e in first[1000:]}
    rig.front.script = lambda call: Action.REFUSE if set(call.event_ids) == refused_ids else Action.FORWARD

    stream = OpenStream(rig.gateway.address)
    stream.send(licensed_metadata(license_key))
    stream.send(events_request(first))
    stream.send(events_request(second))
    answers = [stream.receive(), stream.receive()]
    # As the exporter does: what was not acknowledged is sent again (here while Pub/Sub accepts it).
    rig.front.script = lambda call: Action.FORWARD
    stream.send(events_request(first[1000:] + third))
    answers.append(stream.receive())
    result = stream.finish()

    assert result.code == grpc.StatusCode.OK, result.details
    assert list(answers[0].succeeded_events) == [e.id for e in first[:1000]]  # the other request of its batch
    assert list(answers[1].succeeded_events) == [e.id for e in second]
    assert list(answers[2].succeeded_events) == [e.id for e in first[1000:] + third]
    refused = [call for call in rig.front.calls if call.action is Action.REFUSE]
    assert len(refused) == 1 and set(refused[0].event_ids) == refused_ids  # refused once: not retried
    sent = [*first, *second, *third]
    pubsub.pull(rig.subscription, [e.id for e in sent])
    delivered = Counter(
        i for call in publishes_to(rig, rig.topic) if call.action is Action.FORWARD for i in call.event_ids
    )
    assert delivered == Counter(e.id for e in sent)  # each published once: only the refused ones went again
    assert pubsub.drain(rig.deadletter_subscription, quiet_seconds=0.5) == []  # a failed request is never a dead letter
    line = stream_line(rig.gateway)
    assert (line["events_published"], line["events_failed"]) == (1500 + 300 + 100, 500)
    assert "injected fault" in line["first_error"]


def test_a_dead_letter_that_pubsub_refuses_is_not_acknowledged(
    rig_factory: Callable[..., Rig], pubsub: PubSub, license_key: str
) -> None:
    rig = rig_factory()
    rig.front.script = lambda call: Action.REFUSE if call.topic.endswith(rig.deadletter_topic) else Action.FORWARD
    valid, invalid = make_event(1), make_event(2, feature="Not Valid")

    answer, ended = one_batch(rig, license_key, [valid, invalid])

    assert ended.code == grpc.StatusCode.OK, ended.details
    assert list(answer.succeeded_events) == [valid.id]  # the invalid event comes back, to be dead-lettered then
    assert [call.event_ids for call in publishes_to(rig, rig.deadletter_topic)] == [(invalid.id,)]
    assert set(pubsub.pull(rig.subscription, [valid.id])) == {valid.id}
    line = stream_line(rig.gateway)
    assert (line["events_published"], line["events_dead_lettered"], line["events_failed"]) == (1, 0, 1)


def test_a_dead_letter_publish_that_outlasts_the_publish_timeout_is_not_acknowledged(
    rig_factory: Callable[..., Rig], pubsub: PubSub, license_key: str
) -> None:
    rig = rig_factory(TELEMETRY_GATEWAY_PUBLISH_TIMEOUT="2")
    release = threading.Event()

    def hold_dead_letters(call: PublishCall) -> Action:
        if call.topic.endswith(rig.deadletter_topic):
            release.wait(60)  # held until the gateway has answered without it
        return Action.FORWARD

    rig.front.script = hold_dead_letters
    valid, invalid = make_event(1), make_event(2, action="")

    try:
        stream = OpenStream(rig.gateway.address)
        stream.send(licensed_metadata(license_key))
        stream.send(events_request([valid, invalid]))
        answer = stream.receive()
    finally:
        release.set()
    ended = stream.finish()

    assert ended.code == grpc.StatusCode.OK, ended.details
    assert list(answer.succeeded_events) == [valid.id]
    line = stream_line(rig.gateway)
    assert (line["events_dead_lettered"], line["events_failed"]) == (0, 1)
    assert "DeadlineExceeded" in line["first_error"] or "Timeout" in line["first_error"], line["first_error"]


def test_without_a_dead_letter_topic_an_unpublishable_event_is_logged_and_acknowledged(
    rig_factory: Callable[..., Rig], pubsub: PubSub, license_key: str
) -> None:
    rig = rig_factory(deadletter=False)
    valid, invalid = make_event(1), make_event(2, feature="Not Valid")

    answer, ended = one_batch(rig, license_key, [valid, invalid])

    assert ended.code == grpc.StatusCode.OK, ended.details
    assert list(answer.succeeded_events) == [valid.id, invalid.id]  # it would only come back forever
    assert {call.topic.rsplit("/", 1)[1] for call in rig.front.calls} == {rig.topic}
    (warning,) = [
        r
        for r in rig.gateway.log_records()
        if r.get("message") == "event cannot be published and no dead-letter topic is set"
    ]
    assert warning["severity"] == "WARNING"
    assert (warning["event_id"], warning["reason"]) == (invalid.id, "invalid")
    assert "feature 'Not Valid' must be" in warning["detail"]
    assert f'"id":"{invalid.id}"' in warning["dead_letter"] and "secret-query-do-not-leak" not in warning["dead_letter"]
    line = stream_line(rig.gateway)
    assert (line["events_published"], line["events_dead_lettered"], line["events_failed"]) == (1, 1, 0)


def test_record_event_answers_unavailable_when_pubsub_refuses_and_ok_once_it_accepts(
    rig_factory: Callable[..., Rig], service_token: ServiceToken
) -> None:
    rig = rig_factory()
    rig.front.script = lambda call: Action.REFUSE
    request = pb.RecordEventRequest(metadata=managed_metadata(), event=make_event(1))

    refused = record_event(rig.gateway.address, request, service_token.headers)
    rig.front.script = lambda call: Action.FORWARD
    accepted = record_event(rig.gateway.address, request, service_token.headers)

    assert refused[0] == grpc.StatusCode.UNAVAILABLE
    assert refused[1].startswith("event was not published, retry: ") and "injected fault" in refused[1]
    assert accepted == (grpc.StatusCode.OK, "")


# --- Back-pressure ---------------------------------------------------------------------------------------------------

HOLD_MARGIN_SECONDS = 2.0  # the held requests arrive within milliseconds; anything over the bound would too


@pytest.mark.parametrize(
    ("settings", "batch_events", "bound"),
    [
        pytest.param({"TELEMETRY_GATEWAY_PUBLISH_REQUESTS": "2"}, 100, 2, id="requests in flight"),
        pytest.param({"TELEMETRY_GATEWAY_PUBLISH_MAX_OUTSTANDING_MESSAGES": "350"}, 100, 3, id="messages in flight"),
        pytest.param(
            # 700 events make a request of about 750 KB: two do not fit in 1 MiB.
            {"TELEMETRY_GATEWAY_PUBLISH_MAX_OUTSTANDING_BYTES": str(1024 * 1024)},
            700,
            1,
            id="bytes in flight",
        ),
        pytest.param(
            # Each message of 2,000 events (two requests) is over the whole request budget: one batch at a time.
            {"TELEMETRY_GATEWAY_MAX_INFLIGHT_BYTES": str(1024 * 1024)},
            2000,
            2,
            id="request bytes in flight, all streams",
        ),
    ],
)
def test_what_the_gateway_holds_for_a_stalled_pubsub_is_bounded(
    rig_factory: Callable[..., Rig], pubsub: PubSub, license_key: str, settings: dict, batch_events: int, bound: int
) -> None:
    # Enough turns for all six batches at once (the scheduler counts a batch until it is published), so
    # that only the bound under test holds them back: in-process preparation, eight turns.
    rig = rig_factory(
        **settings,
        TELEMETRY_GATEWAY_PUBLISH_TIMEOUT="60",
        TELEMETRY_GATEWAY_WORKERS="0",
        TELEMETRY_GATEWAY_PUBLISH_CONCURRENCY="8",
        TELEMETRY_GATEWAY_MAX_QUEUE_WAIT="60",
    )
    release = threading.Event()

    def hold(call: PublishCall) -> Action:
        release.wait(90)
        return Action.FORWARD

    rig.front.script = hold
    streams, batches = [], []
    try:
        for _ in range(3):  # three streams with two messages each: six batches want to publish at once
            stream = OpenStream(rig.gateway.address)
            stream.send(licensed_metadata(license_key))
            for _ in range(2):
                batch = [make_event(n) for n in range(batch_events)]
                batches.append(batch)
                stream.send(events_request(batch))
            streams.append(stream)
        deadline = time.monotonic() + 30
        while len(rig.front.calls) < bound and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(HOLD_MARGIN_SECONDS)
        held = len(rig.front.calls)
    finally:
        release.set()
    answers = [[stream.receive(), stream.receive()] for stream in streams]
    results = [stream.finish() for stream in streams]

    assert held == bound, f"{held} publish calls reached Pub/Sub at once, the bound is {bound}"
    assert [r.code for r in results] == [grpc.StatusCode.OK] * 3
    acknowledged = [list(a.succeeded_events) for pair in answers for a in pair]
    assert sorted(map(sorted, acknowledged)) == sorted(sorted(e.id for e in batch) for batch in batches)
