"""A batch's decisions without I/O: events into PublishRequests in the worker, and each event's outcome from
its request's (the outcome table in gateway_run/batches.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from gateway_testing import events_request, make_event

from gateway_run import batches
from gateway_run.batches import LOGGED, BatchResult, PreparedBatch, prepare_batch, publish_batch, settle
from gateway_run.decoding import events_request_bytes
from gateway_run.pubsub_messages import Outgoing, PublishRequestBytes, PublishRequests, StreamContext
from gateway_run.settings import Settings
from telemetry_events import pb
from telemetry_events.logs import JsonFormatter
from telemetry_events.redaction import AllowlistEntry

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
        pytest.param(
            [["m-a", "m-b", "m-extra"], IDS[1], IDS[2]],
            BatchResult(
                8,
                ["d", "e", "c"],
                published=1,
                dead_lettered=3,
                failed=2,
                first_error="Pub/Sub answered 3 message IDs for 2 messages",
            ),
            id="more message IDs than messages: none of the request is trusted either",
        ),
        pytest.param(
            [TimeoutError("too slow"), RuntimeError("refused"), IDS[2]],
            BatchResult(8, ["d", "e"], published=0, dead_lettered=3, failed=3, first_error="TimeoutError: too slow"),
            id="two requests fail: the error of the first failed event is the one reported",
        ),
    ],
)
def test_each_event_is_settled_by_its_own_request(outcomes: list, expected: BatchResult) -> None:
    expected.rejected = [("m", "invalid: feature is required")]

    assert settle(PREPARED, outcomes) == expected


def test_a_batch_of_nothing_settles_to_nothing() -> None:
    assert settle(PreparedBatch(received=0), []) == BatchResult()


def test_each_message_id_acknowledges_the_event_at_its_own_place_in_the_request() -> None:
    prepared = PreparedBatch(received=3, requests=[request(TOPIC, "a", "b", "c")], slots=[("a", 0), ("b", 0), ("c", 0)])

    assert settle(prepared, [["m-a", "", "m-c"]]) == BatchResult(
        3, ["a", "c"], published=2, failed=1, first_error="Pub/Sub returned no message ID"
    )


def test_a_request_error_is_quoted_in_at_most_500_characters() -> None:
    prepared = PreparedBatch(received=1, requests=[request(TOPIC, "a")], slots=[("a", 0)])

    result = settle(prepared, [RuntimeError("x" * 600)])

    assert result.first_error == "RuntimeError: " + "x" * 486


# --- In the worker -------------------------------------------------------------------------------------------------


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    def init(deadletter: str) -> None:
        monkeypatch.setattr(batches, "_worker", None)
        batches.init_worker(
            Settings(topic=TOPIC, deadletter_topic=deadletter, max_message_bytes=20_000), in_child_process=False
        )

    init(DEADLETTER)
    yield init
    monkeypatch.setattr(batches, "_worker", None)


GARBAGE = b"\x0f\xff not an event"  # 15 bytes that do not decode, with no readable ID
GARBAGE_DETAIL = "event of 15 bytes does not decode: not valid protobuf (truncated or corrupt)"


def fixed_clock(monkeypatch: pytest.MonkeyPatch, *readings: float) -> None:
    """batches' time.monotonic (batches' alone: the event loop keeps the real one) reads `readings` in turn."""
    monkeypatch.setattr(batches, "time", SimpleNamespace(monotonic=iter(readings).__next__))


def batch_records(caplog: pytest.LogCaptureFixture, level: int) -> list[Any]:
    """batches' records at `level` (typed Any: their fields are the `extra` of each call)."""
    return [r for r in caplog.records if r.name == "gateway_run.batches" and r.levelno == level]


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


# --- The worker's set-up, its logs and its clock -------------------------------------------------------------------


@pytest.fixture
def process_state() -> Iterator[None]:
    """Signal handlers and root logging put back: a worker process changes both, as it should."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    handlers_of = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    root.handlers = [h for h in handlers if not isinstance(h.formatter, JsonFormatter)]  # so configure() acts
    yield
    for number, handler in handlers_of.items():
        signal.signal(number, handler)
    root.handlers = handlers
    root.setLevel(level)


def test_a_worker_process_ignores_sigterm_and_sigint_and_logs_json_at_its_level(monkeypatch, process_state) -> None:
    monkeypatch.setattr(batches, "_worker", None)
    settings = Settings(topic=TOPIC, log_level="WARNING")

    batches.init_worker(settings, in_child_process=True)

    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    root = logging.getLogger()
    assert root.level == logging.WARNING
    assert len([h for h in root.handlers if isinstance(h.formatter, JsonFormatter)]) == 1
    assert batches._worker is not None and batches._worker.settings is settings


def test_a_worker_thread_leaves_the_signals_and_logging_to_the_gateway(monkeypatch, process_state) -> None:
    monkeypatch.setattr(batches, "_worker", None)
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT), logging.getLogger().level

    batches.init_worker(Settings(topic=TOPIC, log_level="WARNING"), in_child_process=False)

    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT), logging.getLogger().level) == before


def test_a_worker_is_set_up_once_per_process(monkeypatch) -> None:
    monkeypatch.setattr(batches, "_worker", None)
    first = Settings(topic=TOPIC)

    batches.init_worker(first, in_child_process=False)
    batches.init_worker(Settings(topic="projects/p/topics/other"), in_child_process=False)

    assert batches._worker is not None and batches._worker.settings is first


def test_the_pool_probe_sets_the_worker_up_as_a_process_and_answers_its_pid(monkeypatch, process_state) -> None:
    monkeypatch.setattr(batches, "_worker", None)
    settings = Settings(topic=TOPIC)

    assert batches.probe_worker(settings, 0.0) == os.getpid()

    assert batches._worker is not None and batches._worker.settings is settings
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN


def test_a_worker_redacts_with_the_allowlist_of_its_settings(monkeypatch) -> None:
    monkeypatch.setattr(batches, "_worker", None)
    allowlist = (AllowlistEntry("search.results", "viewed", frozenset({"query"})),)
    batches.init_worker(Settings(topic=TOPIC, allowlist=allowlist), in_child_process=False)

    prepared = prepare_batch(INSTANCE, events_request([make_event(1)]).SerializeToString())

    body = json.loads(messages_of(prepared.requests[0])[0].data)
    assert body["event"]["parameters"]["privateMetadata"] == {"query": "secret-query-do-not-leak"}


def test_preparing_without_a_worker_set_up_says_so(monkeypatch) -> None:
    monkeypatch.setattr(batches, "_worker", None)

    with pytest.raises(RuntimeError, match="^init_worker was not called in this worker$"):
        prepare_batch(INSTANCE, events_request([make_event(1)]).SerializeToString())


def test_a_prepared_batch_says_how_long_the_worker_took(worker, monkeypatch) -> None:
    fixed_clock(monkeypatch, 100.0, 100.25)

    prepared = prepare_batch(INSTANCE, events_request([make_event(1)]).SerializeToString())

    assert prepared.seconds == 0.25


def test_a_batch_with_nothing_unpublishable_logs_nothing(worker, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway_run.batches")

    prepare_batch(INSTANCE, events_request([make_event(1), make_event(2)]).SerializeToString())

    assert [r for r in caplog.records if r.name == "gateway_run.batches"] == []


def test_dead_letters_are_logged_once_per_batch_with_five_examples(worker, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway_run.batches")
    good, bad = make_event(1), [make_event(10 + n, action="") for n in range(4)]
    # An ID past 200 characters, and problems that take more than 500 to describe (each \x01 is quoted as 4).
    long = pb.Event(id="x" * 300, feature="\x01" * 64, action="\x01" * 64)
    raw = [good.SerializeToString(), GARBAGE, long.SerializeToString()] + [e.SerializeToString() for e in bad]

    prepared = prepare_batch(INSTANCE, events_request_bytes(raw))

    assert batch_records(caplog, logging.WARNING) == []
    [record] = batch_records(caplog, logging.INFO)
    assert record.getMessage() == "events cannot be published"
    assert (record.request_id, record.source, record.count, record.outcome) == (
        "r",
        "licensed_instance",
        6,
        "dead-lettered",
    )
    examples = record.examples
    assert [e["event_id"] for e in examples] == ["", "x" * 200, bad[0].id, bad[1].id, bad[2].id]
    assert examples[0] == {"event_id": "", "reason": "undecodable", "detail": GARBAGE_DETAIL, "size": 15}
    assert examples[1]["reason"] == "invalid"
    assert len(examples[1]["detail"]) == 500
    assert examples[1]["detail"].startswith(f"id '{'x' * 80}' is not a UUID; timestamp is required; feature '\\x01")
    long_dead_letter = messages_of(prepared.requests[1])[1]
    assert examples[1]["size"] == int(long_dead_letter.attributes["size"])
    assert [e["detail"] for e in examples[2:]] == ["action is required"] * 3
    assert prepared.slots[:3] == [(good.id, 0), ("", 1), ("x" * 300, 1)]


def test_a_managed_service_is_logged_as_rejected(worker, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway_run.batches")
    good = make_event(1)

    prepared = prepare_batch(MANAGED, events_request_bytes([good.SerializeToString(), GARBAGE]))

    assert prepared.rejected == [("", "undecodable: " + GARBAGE_DETAIL)]
    assert batch_records(caplog, logging.WARNING) == []
    [record] = batch_records(caplog, logging.INFO)
    assert record.getMessage() == "events cannot be published"
    assert (record.request_id, record.source, record.count, record.outcome) == ("r", "cody-gateway", 1, "rejected")
    assert record.examples == [{"event_id": "", "reason": "undecodable", "detail": GARBAGE_DETAIL, "size": 15}]


def test_without_a_dead_letter_topic_each_dead_letter_is_logged_at_warning_cut_at_8192_bytes(worker, caplog) -> None:
    worker("")
    caplog.set_level(logging.INFO, logger="gateway_run.batches")
    # Each dead letter holds 12,000 bytes of 3-byte characters, shifted by one byte from the last, so that byte 8192
    # falls once at a character's end and twice inside one.
    bad = []
    for shift in range(3):
        event = make_event(shift, action="")
        event.feature_flags.flags["note"] = "a" * shift + "€" * 4000
        bad.append(event)

    prepared = prepare_batch(INSTANCE, events_request([*bad, make_event(5)]).SerializeToString())

    assert [slot[1] for slot in prepared.slots] == [LOGGED, LOGGED, LOGGED, 0]
    assert batch_records(caplog, logging.INFO) == []  # each was logged on its own
    warnings = batch_records(caplog, logging.WARNING)
    assert [r.getMessage() for r in warnings] == ["event cannot be published and no dead-letter topic is set"] * 3
    assert [(r.event_id, r.reason, r.detail, r.request_id) for r in warnings] == [
        (event.id, "invalid", "action is required", "r") for event in bad
    ]
    assert all(r.size > 12_000 for r in warnings)
    for record in warnings:
        assert record.dead_letter.startswith('{"metadata":{"requestId":"r"},"reason":"invalid"')
        assert record.dead_letter.endswith("€" * 100)
    # Never a partial character, never more than 8192 bytes.
    assert sorted(len(r.dead_letter.encode()) for r in warnings) == [8190, 8191, 8192]


def test_more_than_1000_dead_letters_take_a_second_dead_letter_request(worker) -> None:
    good = make_event(1)

    prepared = prepare_batch(INSTANCE, events_request_bytes([good.SerializeToString()] + [GARBAGE] * 1001))

    assert [(r.topic, r.messages) for r in prepared.requests] == [(TOPIC, 1), (DEADLETTER, 1000), (DEADLETTER, 1)]
    assert prepared.dead_letter_requests == {1, 2}
    assert prepared.slots == [(good.id, 0)] + [("", 1)] * 1000 + [("", 2)]
    dead = messages_of(prepared.requests[2])
    assert [(m.attributes["reason"], m.attributes["size"]) for m in dead] == [("undecodable", "15")]
    # Counted as dead-lettered, but with no ID there is nothing to acknowledge them by.
    ids = [["m-1"], ["d"] * 1000, ["d"]]
    assert settle(prepared, ids) == BatchResult(1002, [good.id], published=1, dead_lettered=1001)


# --- Publishing ----------------------------------------------------------------------------------------------------


class ScriptedPublisher:
    """Answers each request with the outcome given for it; counts how many are in flight at once."""

    def __init__(self, answers: Sequence[tuple[PublishRequestBytes, Sequence[str] | Exception]]) -> None:
        self._answers = answers
        self.received: list[PublishRequestBytes] = []
        self.in_flight = self.most_in_flight = 0

    async def publish(self, request: PublishRequestBytes) -> Sequence[str]:
        self.received.append(request)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0)
        self.in_flight -= 1
        [answer] = [answer for sent, answer in self._answers if sent is request]
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_every_request_is_sent_at_once_and_a_failed_one_fails_only_its_events(monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway_run.batches")
    prepared = dataclasses.replace(PREPARED, seconds=0.5)
    publisher = ScriptedPublisher(list(zip(PREPARED.requests, [IDS[0], RuntimeError("refused"), IDS[2]], strict=True)))
    fixed_clock(monkeypatch, 100.0, 103.25)

    result = asyncio.run(publish_batch(prepared, publisher, INSTANCE))  # type: ignore[arg-type]

    assert all(sent is request for sent, request in zip(publisher.received, PREPARED.requests, strict=True))
    assert publisher.most_in_flight == 3
    assert result == BatchResult(
        8,
        ["a", "d", "b", "e"],
        published=2,
        dead_lettered=3,
        failed=1,
        rejected=[("m", "invalid: feature is required")],
        first_error="RuntimeError: refused",
        seconds=3.75,  # the worker's 0.5 and the publishing's 3.25
    )
    assert batch_records(caplog, logging.WARNING) == []


@pytest.mark.parametrize(
    ("worker_seconds", "published_at", "logged"),
    [
        pytest.param(0.5, 109.5, None, id="10 s exactly: not slow"),
        pytest.param(0.5, 110.0, 10.5, id="10.5 s: slow"),
        pytest.param(2.0, 108.123456, 10.123, id="slow, in milliseconds"),
    ],
)
def test_a_batch_slower_than_10_seconds_is_logged(monkeypatch, caplog, worker_seconds, published_at, logged) -> None:
    caplog.set_level(logging.INFO, logger="gateway_run.batches")
    prepared = PreparedBatch(received=1, requests=[request(TOPIC, "a")], slots=[("a", 0)], seconds=worker_seconds)
    fixed_clock(monkeypatch, 100.0, published_at)

    result = asyncio.run(publish_batch(prepared, ScriptedPublisher([(prepared.requests[0], ["m-a"])]), INSTANCE))  # type: ignore[arg-type]

    assert result.succeeded == ["a"]
    assert result.seconds == pytest.approx(worker_seconds + published_at - 100.0)
    warnings = batch_records(caplog, logging.WARNING)
    if logged is None:
        assert warnings == []
    else:
        [record] = warnings
        assert record.getMessage() == "slow publish"
        assert (record.request_id, record.events, record.seconds) == ("r", 1, logged)
