"""A batch's decisions without I/O: events into PublishRequests in the worker, and each event's outcome from
its request's (the outcome table in gateway_run/batches.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from gateway_testing import events_request, make_event

from gateway_run import batches
from gateway_run.batches import LOGGED, BatchResult, PreparedBatch, prepare_batch, settle
from gateway_run.decoding import events_request_bytes
from gateway_run.pubsub_messages import Outgoing, PublishRequestBytes, PublishRequests, StreamContext
from gateway_run.settings import Settings

TOPIC = "projects/p/topics/events"
DEADLETTER = "projects/p/topics/deadletter"
INSTANCE = StreamContext(source="licensed_instance", metadata_json='{"requestId":"r"}', managed=False, request_id="r")
MANAGED = StreamContext(source="cody-gateway", metadata_json='{"requestId":"r"}', managed=True, request_id="r")


def request(topic: str, *event_ids: str) -> PublishRequestBytes:
    return PublishRequestBytes(topic, b"", list(event_ids), 100 * len(event_ids))


# Requests 0 and 1 go to the events topic, 2 to the dead-letter topic; "e" was logged (no dead-letter topic),
# and the last dead letter is an undecodable event without a readable ID.
PREPARED = PreparedBatch(
    received=8,
    requests=[request(TOPIC, "a", "b"), request(TOPIC, "c"), request(DEADLETTER, "d", "")],
    dead_letter_requests={2},
    slots=[("a", 0), ("d", 2), ("b", 0), ("e", LOGGED), ("c", 1), ("", 2)],
    rejected=[("m", "invalid: feature is required")],
)
IDS = [["m-a", "m-b"], ["m-c"], ["m-d", "m-x"]]


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        pytest.param(
            IDS,
            BatchResult(8, ["a", "d", "b", "e", "c"], published=3, dead_lettered=3, failed=0),
            id="every request accepted",
        ),
        pytest.param(
            [IDS[0], RuntimeError("refused"), IDS[2]],
            BatchResult(
                8, ["a", "d", "b", "e"], published=2, dead_lettered=3, failed=1, first_error="RuntimeError: refused"
            ),
            id="one events request fails: exactly its events",
        ),
        pytest.param(
            [IDS[0], IDS[1], TimeoutError("too slow")],
            BatchResult(
                8, ["a", "b", "e", "c"], published=3, dead_lettered=1, failed=2, first_error="TimeoutError: too slow"
            ),
            id="the dead-letter request fails: its events are not acknowledged",
        ),
        pytest.param(
            [["m-a"], IDS[1], IDS[2]],
            BatchResult(
                8,
                ["d", "e", "c"],
                published=1,
                dead_lettered=3,
                failed=2,
                first_error="Pub/Sub answered 1 message IDs for 2 messages",
            ),
            id="fewer message IDs than messages: none of the request is trusted",
        ),
        pytest.param(
            [["m-a", ""], IDS[1], IDS[2]],
            BatchResult(
                8,
                ["a", "d", "e", "c"],
                published=2,
                dead_lettered=3,
                failed=1,
                first_error="Pub/Sub returned no message ID",
            ),
            id="an empty message ID: that event only",
        ),
    ],
)
def test_each_event_is_settled_by_its_own_request(outcomes: list, expected: BatchResult) -> None:
    expected.rejected = [("m", "invalid: feature is required")]

    assert settle(PREPARED, outcomes) == expected


def test_a_batch_of_nothing_settles_to_nothing() -> None:
    assert settle(PreparedBatch(received=0), []) == BatchResult()


# --- In the worker -------------------------------------------------------------------------------------------------


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def init(deadletter: str) -> None:
        monkeypatch.setattr(batches, "_worker", None)
        batches.init_worker(
            Settings(topic=TOPIC, deadletter_topic=deadletter, max_message_bytes=20_000), in_child_process=False
        )

    init(DEADLETTER)
    yield init
    monkeypatch.setattr(batches, "_worker", None)


def messages_of(request: PublishRequestBytes) -> list:
    from google.pubsub_v1.types import PublishRequest

    decoded = PublishRequest.pb().FromString(request.data)
    assert decoded.topic == request.topic
    return list(decoded.messages)


def test_a_worker_turns_1500_events_into_two_requests_and_its_dead_letters_into_a_third(worker) -> None:
    events = [make_event(n) for n in range(1500)]
    invalid = make_event(2000, feature="Not Valid")
    garbage = b"\x0f\xff not an event"
    raw = events_request_bytes(
        [e.SerializeToString() for e in events[:700]]
        + [invalid.SerializeToString(), garbage]
        + [e.SerializeToString() for e in events[700:]]
    )

    prepared = prepare_batch(INSTANCE, raw)

    assert prepared.received == 1502
    assert [(r.topic, r.messages) for r in prepared.requests] == [(TOPIC, 1000), (TOPIC, 500), (DEADLETTER, 2)]
    assert prepared.dead_letter_requests == {2}
    assert prepared.requests[0].event_ids == [e.id for e in events[:1000]]
    assert prepared.requests[2].event_ids == [invalid.id, ""]
    assert prepared.slots == (
        [(e.id, 0) for e in events[:700]]
        + [(invalid.id, 2), ("", 2)]
        + [(e.id, 0) for e in events[700:1000]]
        + [(e.id, 1) for e in events[1000:]]
    )
    published = messages_of(prepared.requests[1])
    assert [m.attributes["event.id"] for m in published] == [e.id for e in events[1000:]]
    assert json.loads(published[0].data)["event"]["id"] == events[1000].id
    dead = messages_of(prepared.requests[2])
    assert [m.attributes["reason"] for m in dead] == ["invalid", "undecodable"]


def test_a_managed_service_gets_its_unpublishable_events_back_instead_of_dead_letters(worker) -> None:
    good, bad = make_event(1), make_event(2, action="")

    prepared = prepare_batch(MANAGED, events_request([good, bad]).SerializeToString())

    assert [(r.topic, r.event_ids) for r in prepared.requests] == [(TOPIC, [good.id])]
    assert prepared.rejected == [(bad.id, "invalid: action is required")]
    assert prepared.slots == [(good.id, 0)]


def test_without_a_dead_letter_topic_an_unpublishable_event_is_acknowledged_from_the_log(worker) -> None:
    worker("")
    good, bad = make_event(1), make_event(2, action="")

    prepared = prepare_batch(INSTANCE, events_request([bad, good]).SerializeToString())

    assert [r.topic for r in prepared.requests] == [TOPIC]
    assert prepared.slots == [(bad.id, LOGGED), (good.id, 0)]
    assert settle(prepared, [["m-1"]]) == BatchResult(2, [bad.id, good.id], published=1, dead_lettered=1)


# --- PublishRequests -----------------------------------------------------------------------------------------------


def outgoing(number: int, data_bytes: int) -> Outgoing:
    return Outgoing(f"id-{number}", b"x" * data_bytes, {"event.id": f"id-{number}"}, 0)


def test_a_request_holds_at_most_1000_messages() -> None:
    collector = PublishRequests(TOPIC)

    numbers = [collector.add(outgoing(n, 10)) for n in range(2001)]

    assert numbers == [0] * 1000 + [1] * 1000 + [2]
    assert [r.messages for r in collector.requests()] == [1000, 1000, 1]
    assert collector.requests() == []


def test_a_request_stays_under_10_mb_counting_its_framing() -> None:
    collector = PublishRequests(TOPIC)
    for n in range(5):
        collector.add(outgoing(n, 3_000_000))
    collector.add(outgoing(5, 9_000_000))  # alone: never refused here

    requests = collector.requests()

    assert [r.messages for r in requests] == [3, 2, 1]
    for item in requests:
        assert len(item.data) <= item.size <= 10_000_000
