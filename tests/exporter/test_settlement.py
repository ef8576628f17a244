"""The settlement rules as a table: a batch, how its stream ended, and what becomes of each row."""

from __future__ import annotations

import pytest

from telemetry_export.gateway_errors import (
    GatewayBusy,
    GatewayUnavailable,
    InstanceRefused,
    MessageRefused,
    MessageTooLarge,
)
from telemetry_export.settlement import (
    LONE_EVENT_OVERHEAD,
    NOT_ACKNOWLEDGED,
    OUT_OF_TIME,
    OutOfTime,
    SentRows,
    Settlement,
    abandoned,
    settle,
    stop_reason,
)

ROWS = {"a": 1, "b": 1, "c": 3, "d": 1}
MAX_ATTEMPTS = 3
TOO_LARGE = "gateway stream failed: RESOURCE_EXHAUSTED: Received message larger than max (2000100 vs. 2000000)"

CASES = {
    "all acknowledged": (
        SentRows(ROWS, acknowledged=frozenset(ROWS)),
        None,
        Settlement(exported=frozenset(ROWS), reason=NOT_ACKNOWLEDGED),
    ),
    "refused among accepted: attempt spent, quarantined past the limit": (
        SentRows(ROWS, acknowledged=frozenset({"a", "b"})),
        None,
        Settlement(
            exported=frozenset({"a", "b"}),
            quarantine={"c": f"{NOT_ACKNOWLEDGED} after 3 attempts"},
            release=("d",),
            reason=NOT_ACKNOWLEDGED,
            failed=1,
        ),
    ),
    "none acknowledged: trouble behind the gateway, attempts given back, run stops": (
        SentRows(ROWS),
        None,
        Settlement(
            release=("a", "b", "c", "d"),
            reason="gateway acknowledged none of 4 events",
            refund=True,
            failed=4,
            accepted_none=True,
        ),
    ),
    "unsendable rows are quarantined, the rest exported": (
        SentRows(ROWS, acknowledged=frozenset({"a", "b", "c"}), set_aside={"d": "invalid event: x"}),
        None,
        Settlement(exported=frozenset({"a", "b", "c"}), quarantine={"d": "invalid event: x"}, reason=NOT_ACKNOWLEDGED),
    ),
    "out of time: attempts given back": (
        SentRows(ROWS, acknowledged=frozenset({"a"}), unanswered=(("b", "c", "d"),)),
        OutOfTime(),
        Settlement(exported=frozenset({"a"}), release=("b", "c", "d"), reason=OUT_OF_TIME, refund=True, failed=3),
    ),
    "gateway unavailable: attempts given back, failed": (
        SentRows(ROWS, unanswered=(("a", "b", "c", "d"),)),
        GatewayUnavailable("gateway stream failed: UNAVAILABLE: down"),
        Settlement(
            release=("a", "b", "c", "d"), reason="gateway stream failed: UNAVAILABLE: down", refund=True, failed=4
        ),
    ),
    "instance refused: attempts given back, not failed": (
        SentRows(ROWS, unanswered=(("a", "b", "c", "d"),)),
        InstanceRefused("INVALID_ARGUMENT: invalid license_key: expired"),
        Settlement(
            release=("a", "b", "c", "d"),
            reason="the gateway refused this instance: INVALID_ARGUMENT: invalid license_key: expired",
            refund=True,
            failed=0,
        ),
    ),
    "busy: answered rows exported, the rest given back and retried in this run, not failed": (
        SentRows(ROWS, acknowledged=frozenset({"a", "b"}), unanswered=(("c", "d"),)),
        GatewayBusy("gateway busy", retry_after=2.0),
        Settlement(
            exported=frozenset({"a", "b"}),
            release=("c", "d"),
            reason="gateway busy",
            refund=True,
            failed=0,
            again_this_run=True,
        ),
    ),
    "size limit named: a lone event over it is quarantined, one under it is not": (
        SentRows(
            ROWS,
            acknowledged=frozenset({"a"}),
            unanswered=(("b",), ("c",), ("d",)),
            lone_sizes={"b": 2_000_000 - LONE_EVENT_OVERHEAD + 1, "c": 2_000_000 - LONE_EVENT_OVERHEAD},
        ),
        MessageTooLarge(TOO_LARGE, limit=2_000_000),
        Settlement(
            exported=frozenset({"a"}),
            quarantine={
                "b": f"event of {2_000_000 - LONE_EVENT_OVERHEAD + 1} bytes is larger than the gateway accepts "
                f"({TOO_LARGE}): it can never be sent"
            },
            release=("c", "d"),
            reason=TOO_LARGE,
            refund=True,
            failed=2,
            again_this_run=True,
        ),
    ),
    "size limit named, no lone event over it: nothing set aside, rows given back": (
        SentRows(ROWS, unanswered=(("a", "b", "c", "d"),)),
        MessageTooLarge(TOO_LARGE, limit=2_000_000),
        Settlement(release=("a", "b", "c", "d"), reason=TOO_LARGE, refund=True, failed=4, again_this_run=True),
    ),
    "message refused: the first unanswered message is split in halves, the rest is one group": (
        SentRows(ROWS, acknowledged=frozenset({"a"}), unanswered=(("b", "c"), ("d",))),
        MessageRefused("gateway stream failed: INVALID_ARGUMENT: request is not a valid RecordEventsRequest"),
        Settlement(exported=frozenset({"a"}), reason=NOT_ACKNOWLEDGED, suspects=(("b",), ("c",), ("d",))),
    ),
    "message refused, a lone row in a shared stream: sent again alone to be sure": (
        SentRows(ROWS, acknowledged=frozenset({"a", "b", "c"}), unanswered=(("d",),)),
        MessageRefused("refused"),
        Settlement(exported=frozenset({"a", "b", "c"}), reason=NOT_ACKNOWLEDGED, suspects=(("d",),)),
    ),
    "message refused, a lone row sent alone: isolated with the gateway's reason": (
        SentRows({"d": 1}, unanswered=(("d",),), sent_alone=True),
        MessageRefused("gateway stream failed: INTERNAL: Exception deserializing request!"),
        Settlement(
            reason=NOT_ACKNOWLEDGED,
            isolated={
                "d": "refused by the gateway when sent alone: "
                "gateway stream failed: INTERNAL: Exception deserializing request!"
            },
        ),
    ),
    "message refused, the batch behind the refused one: one group, sent again": (
        SentRows(ROWS, unanswered=(("a", "b"), ("c", "d")), first_unanswered=False),
        MessageRefused("refused"),
        Settlement(reason=NOT_ACKNOWLEDGED, suspects=(("a", "b", "c", "d"),)),
    ),
    "message refused after answered messages: their unacknowledged rows had a fair attempt": (
        SentRows(ROWS, acknowledged=frozenset({"a"}), unanswered=(("d",),)),
        MessageRefused("refused"),
        Settlement(
            exported=frozenset({"a"}),
            quarantine={"c": f"{NOT_ACKNOWLEDGED} after 3 attempts"},
            release=("b",),
            reason=NOT_ACKNOWLEDGED,
            failed=1,
            suspects=(("d",),),
        ),
    ),
    "size limit not named: as a refused message, never quarantined unseen": (
        SentRows({"a": 1, "b": 1}, unanswered=(("a",), ("b",)), lone_sizes={"a": 10, "b": 10}),
        MessageTooLarge("gateway stream failed: RESOURCE_EXHAUSTED: too big", limit=None),
        Settlement(reason=NOT_ACKNOWLEDGED, suspects=(("a",), ("b",))),
    ),
}


@pytest.mark.parametrize("batch, ending, expected", CASES.values(), ids=CASES.keys())
def test_settlement(batch, ending, expected):
    assert settle(batch, ending, MAX_ATTEMPTS) == expected


def test_a_lone_event_under_the_limit_grpc_names_is_never_quarantined():
    """Parsing the limit as 0 (or ignoring it) would quarantine every lone event of a broken stream."""
    batch = SentRows(
        {"small": 1, "huge": 1}, unanswered=(("small",), ("huge",)), lone_sizes={"small": 50_000, "huge": 5_000_000}
    )
    outcome = settle(batch, MessageTooLarge(TOO_LARGE, limit=2_000_000), MAX_ATTEMPTS)
    assert set(outcome.quarantine) == {"huge"}
    assert outcome.release == ("small",) and outcome.refund


def test_unresolved_suspects_spend_their_attempt_and_unblamed_rows_get_it_back():
    outcomes = abandoned([("a", "b"), ("c",)], {"d": "refused by the gateway when sent alone: x"}, ROWS, "x", 3)
    assert outcomes == [
        Settlement(
            quarantine={"c": "refused with other events in one message, not yet narrowed down: x after 3 attempts"},
            release=("a", "b"),
            reason="refused with other events in one message, not yet narrowed down: x",
            failed=2,
        ),
        Settlement(
            release=("d",),
            reason="refused alone, but the gateway accepted no other event in this run: "
            "refused by the gateway when sent alone: x",
            refund=True,
            failed=1,
        ),
    ]


STOP_REASONS = {
    "the gateway refused this instance: INVALID_ARGUMENT: invalid license_key: expired": InstanceRefused(
        "INVALID_ARGUMENT: invalid license_key: expired"
    ),
    "gateway busy: retry after 2.5 s (gateway stream failed: RESOURCE_EXHAUSTED: gateway busy)": GatewayBusy(
        "gateway stream failed: RESOURCE_EXHAUSTED: gateway busy", 2.5
    ),
    "gateway unavailable: gateway stream failed: UNAVAILABLE: x": GatewayUnavailable(
        "gateway stream failed: UNAVAILABLE: x"
    ),
    "gateway refused a message: gateway stream failed: INVALID_ARGUMENT: x": MessageRefused(
        "gateway stream failed: INVALID_ARGUMENT: x"
    ),
}


@pytest.mark.parametrize("expected, error", STOP_REASONS.items(), ids=STOP_REASONS.keys())
def test_stop_reasons(expected, error):
    assert stop_reason(error) == expected
