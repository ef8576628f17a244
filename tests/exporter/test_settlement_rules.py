"""Settlement rules the table in test_settlement.py left unpinned (found by mutation testing, docs/testing.md)."""

from __future__ import annotations

from telemetry_export.gateway_errors import MessageTooLarge
from telemetry_export.settlement import OUT_OF_TIME, OutOfTime, SentRows, Settlement, settle

MAX_ATTEMPTS = 3


def test_a_run_out_of_time_gives_the_attempt_back_and_says_why():
    # issue 16: "no attempt given back when a run ran out of time". The rows had no fair attempt.
    error = OutOfTime()
    assert error.reason == OUT_OF_TIME == str(error)
    outcome = settle(SentRows({"a": 1, "b": 2}, acknowledged=frozenset({"a"}), unanswered=(("b",),)), error, 3)
    assert outcome == Settlement(exported=frozenset({"a"}), release=("b",), reason=OUT_OF_TIME, refund=True, failed=1)


def test_the_quarantine_reason_quotes_at_most_200_characters_of_the_gateways_status():
    # A status the gateway (or anything between) makes long must not fill last_error without bound.
    status = "gateway stream failed: RESOURCE_EXHAUSTED: larger than max (5000 vs. 4000) " + "x" * 400
    batch = SentRows({"big": 1}, unanswered=(("big",),), lone_sizes={"big": 5_000})
    outcome = settle(batch, MessageTooLarge(status, limit=4_000), MAX_ATTEMPTS)
    assert outcome.quarantine == {
        "big": f"event of 5000 bytes is larger than the gateway accepts ({status[:200]}): it can never be sent"
    }


def test_a_lone_event_exactly_at_the_limit_is_sent_and_one_byte_over_is_quarantined():
    # The limit gRPC names is for the whole request: the event plus LONE_EVENT_OVERHEAD bytes of framing.
    batch = SentRows(
        {"fits": 1, "over": 1}, unanswered=(("fits",), ("over",)), lone_sizes={"fits": 3_988, "over": 3_989}
    )
    outcome = settle(batch, MessageTooLarge("larger than max (4001 vs. 4000)", limit=4_000), MAX_ATTEMPTS)
    assert set(outcome.quarantine) == {"over"} and outcome.release == ("fits",)


def test_a_batch_whose_rows_were_all_set_aside_sent_nothing_and_does_not_stop_the_run():
    # Nothing reached the gateway, so an empty acknowledgement says nothing about what lies behind it.
    batch = SentRows({"a": 1, "b": 1}, set_aside={"a": "invalid event: x", "b": "invalid event: y"})
    outcome = settle(batch, None, MAX_ATTEMPTS)
    assert not outcome.accepted_none and not outcome.refund
    assert outcome.quarantine == {"a": "invalid event: x", "b": "invalid event: y"} and outcome.release == ()


def test_acknowledged_none_counts_only_the_events_that_were_sent():
    batch = SentRows({"a": 1, "b": 1, "c": 1}, set_aside={"a": "invalid event: x"})
    outcome = settle(batch, None, MAX_ATTEMPTS)
    assert outcome.accepted_none and outcome.reason == "gateway acknowledged none of 2 events"
    assert outcome.release == ("b", "c") and outcome.quarantine == {"a": "invalid event: x"}
