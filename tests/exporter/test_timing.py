"""The exporter's time rules, asserted by what it did rather than by how long it took.

- It stops claiming once less time is left than twice its slowest batch took (or 1 s).
- Each stream's deadline is the time left plus 0.8 of the margin: gRPC ends a call that would
  outlive the budget's margin.
- A gateway that does not answer the stream's opening within TELEMETRY_EXPORT_RPC_TIMEOUT (or
  the time left) is cancelled before any event goes out; one silent longer than that while
  events are outstanding is cancelled too, and not before.
- Rows still unanswered when the time runs out get their attempt back.

The run's clock is a parameter of run_export: where the rule is about time spent, the clock is
virtual and each claim advances it, so the test knows exactly when each batch was claimed.
Claims and streams are the real ones, on a real Postgres and real gRPC servers.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from telemetry_export import exporter
from telemetry_export.exporter import run_export
from telemetry_export.gateway_client import open_channel, parse_gateway_addr
from telemetry_export.gateway_stream import GatewayStream
from telemetry_export.settlement import OUT_OF_TIME
from telemetry_export.store import export_queue

from .conftest import POLICY, exporter_settings, queue_states, record_samples


class VirtualClock:
    """Stands still unless advanced: time passes only where the test says it does."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class RecordingStream(GatewayStream):
    """The real stream, noting the deadline it was given, how long it waited to be accepted, and its cancels."""

    opened: list[RecordingStream] = []

    def __init__(self, channel, identity, timeout: float, clock=time.monotonic):
        self.deadline_given = timeout
        self.acceptance_waits: list[float] = []
        self.cancels: list[tuple[str, float]] = []  # reason, silence when cancelled
        RecordingStream.opened.append(self)
        super().__init__(channel, identity, timeout, clock)

    def wait_accepted(self, timeout: float) -> bool:
        self.acceptance_waits.append(timeout)
        return super().wait_accepted(timeout)

    def cancel(self, reason: str = "") -> None:
        self.cancels.append((reason, self.silent_for()))
        super().cancel(reason)


@pytest.fixture
def streams(monkeypatch) -> list[RecordingStream]:
    RecordingStream.opened = []
    monkeypatch.setattr(exporter, "GatewayStream", RecordingStream)
    return RecordingStream.opened


class ClaimLog:
    """Every claim the run makes, as (time left in the run when it claimed, rows claimed).

    With a virtual clock, each claim that returns rows advances it by `batch_seconds`: the time
    the batch "takes".
    """

    def __init__(self) -> None:
        self.made: list[tuple[float, int]] = []
        self.ids: list[str] = []
        self.run: exporter._Run | None = None
        self.clock: VirtualClock | None = None
        self.batch_seconds = 0.0


@pytest.fixture
def claims(monkeypatch) -> ClaimLog:
    log = ClaimLog()
    real_claim = export_queue.claim

    def claim(cursor, limit, lease_seconds, owner, skip=()):
        assert log.run is not None
        left = log.run.time_left()
        rows = real_claim(cursor, limit, lease_seconds, owner, skip=skip)
        if rows and log.clock is not None:
            log.clock.now += log.batch_seconds
        log.made.append((left, len(rows)))
        log.ids.extend(row.id for row in rows)
        return rows

    class WatchedRun(exporter._Run):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            log.run = self

    monkeypatch.setattr(export_queue, "claim", claim)
    monkeypatch.setattr(exporter, "_Run", WatchedRun)
    return log


def _run(conn, gateway_url: str, clock=time.monotonic, **overrides):
    settings = exporter_settings(gateway_url, **overrides)
    target = parse_gateway_addr(gateway_url)
    return run_export(conn, settings, POLICY, lambda: open_channel(target), clock=clock)


def _run_on_virtual_clock(conn, scripted, claims: ClaimLog, batch_seconds: float, function_timeout_seconds: int):
    """A run of 100-row batches with a 10 s margin, on a virtual clock each claim advances by `batch_seconds`."""
    claims.clock = VirtualClock()
    claims.batch_seconds = batch_seconds
    return _run(
        conn,
        scripted().url,
        clock=claims.clock,
        batch_size=100,
        function_timeout_seconds=function_timeout_seconds,
        deadline_margin_seconds=10,
    )


def _rows(conn) -> dict[str, tuple[int, str | None]]:
    """Each row's attempts and last error."""
    cursor = conn.cursor()
    cursor.execute("SELECT id::text, attempts, last_error FROM telemetry_events_export_queue")
    rows = {row_id: (attempts, last_error) for row_id, attempts, last_error in cursor.fetchall()}
    conn.commit()
    return rows


def test_claiming_stops_once_less_than_twice_the_slowest_batch_is_left(conn, scripted, claims, streams):
    record_samples(conn, 1_000, seed=71)
    # Every batch takes 20 s of the run's time. A budget of 90 s (100 s less the 10 s margin): batches
    # claimed with 90, 70 and 50 s left; with 30 s left, less than twice the slowest batch (40 s), the
    # run stops claiming.
    report = _run_on_virtual_clock(conn, scripted, claims, batch_seconds=20.0, function_timeout_seconds=100)
    assert report.stopped_because == "time budget"
    assert claims.made == [(90.0, 100), (70.0, 100), (50.0, 100)]
    assert (report.exported, report.batches, report.remaining) == (300, 3, 700)
    # One stream, opened after the first claim, with 70 s left: its deadline is that plus 0.8 of the margin.
    [stream] = streams
    assert stream.deadline_given == 70.0 + 0.8 * 10
    assert stream.acceptance_waits == [60.0]  # TELEMETRY_EXPORT_RPC_TIMEOUT, shorter than what is left
    assert queue_states(conn) == {"exported": 300, "quarantined": 0, "waiting": 700, "leased": 0}


def test_with_under_a_second_left_no_batch_is_claimed_however_fast_they_were(conn, scripted, claims):
    record_samples(conn, 1_000, seed=72)
    # Fast batches (0.25 s each): the floor of 1 s decides.
    report = _run_on_virtual_clock(conn, scripted, claims, batch_seconds=0.25, function_timeout_seconds=12)
    assert report.stopped_because == "time budget"
    assert [left for left, _ in claims.made] == [2.0, 1.75, 1.5, 1.25, 1.0]
    assert report.exported == 500


def test_a_gateway_that_does_not_answer_the_opening_is_cancelled_before_any_event_goes_out(conn, scripted, streams):
    record_samples(conn, 300, seed=73)
    silent = scripted(delay_per_message=30)  # the probe is an events message too: its answer never comes in time
    report = _run(conn, silent.url, rpc_timeout_seconds=1, function_timeout_seconds=60)
    assert report.stopped_because == "gateway unavailable: the gateway did not answer the stream's opening within 1 s"
    [stream] = streams
    assert stream.acceptance_waits == [1.0]  # TELEMETRY_EXPORT_RPC_TIMEOUT, shorter than the time left
    assert [reason for reason, _ in stream.cancels] == ["the gateway did not answer the stream's opening within 1 s"]
    assert silent.received_ids() == []  # no event went out on a stream the gateway had not accepted
    assert set(_rows(conn).values()) == {(0, "the gateway did not answer the stream's opening within 1 s")}
    assert queue_states(conn) == {"exported": 0, "quarantined": 0, "waiting": 300, "leased": 0}


def test_a_silent_gateway_is_cancelled_only_once_it_was_silent_longer_than_the_rpc_timeout(conn, scripted, streams):
    record_samples(conn, 500, seed=74)
    hold = threading.Event()
    stuck = scripted(hold=hold)
    try:
        report = _run(conn, stuck.url, batch_size=500, rpc_timeout_seconds=1.5, function_timeout_seconds=60)
    finally:
        hold.set()
    [stream] = streams
    [(reason, silence)] = stream.cancels
    assert reason.startswith("no answer from the gateway for ")
    assert silence > 1.5  # never before the timeout: slow is not stuck
    said = float(re.match(r"no answer from the gateway for (\d+) s", reason).group(1))
    assert said >= 2  # the silence it reports, rounded, is the one it measured
    assert "(TELEMETRY_EXPORT_RPC_TIMEOUT=1.5)" in reason
    assert report.stopped_because == f"gateway unavailable: {reason}"
    assert report.exported == 0 and report.remaining == 500
    assert {attempts for attempts, _ in _rows(conn).values()} == {0}  # stuck is an outage: no attempt spent
    assert queue_states(conn)["leased"] == 0


def test_rows_unanswered_when_the_time_runs_out_get_their_attempt_back(conn, scripted, claims):
    record_samples(conn, 1_000, seed=75)
    hold = threading.Event()
    stuck = scripted(hold=hold)  # answers the probe, then nothing: the batches stay in flight
    try:
        report = _run(
            conn,
            stuck.url,
            batch_size=200,
            function_timeout_seconds=4,
            deadline_margin_seconds=2,
            rpc_timeout_seconds=60,
        )
    finally:
        hold.set()
    assert report.stopped_because == "time budget"
    claimed = set(claims.ids)
    assert 0 < len(claimed) < 1_000
    rows = _rows(conn)
    assert {rows[i] for i in claimed} == {(0, OUT_OF_TIME)}  # released, with their attempt given back
    assert {rows[i] for i in rows.keys() - claimed} == {(0, None)}  # never claimed
    assert (report.exported, report.remaining) == (0, 1_000)
    assert queue_states(conn)["leased"] == 0


def test_a_time_budget_too_small_for_the_backlog_ends_in_time_and_reports_the_rest(conn, scripted, claims, streams):
    record_samples(conn, 6_000, seed=17)
    slow = scripted(delay_per_message=0.4)
    started = time.monotonic()
    report = _run(
        conn,
        slow.url,
        batch_size=500,
        max_message_bytes=60_000,
        function_timeout_seconds=4.0,
        deadline_margin_seconds=1.0,
    )
    elapsed = time.monotonic() - started
    assert report.stopped_because == "time budget"
    assert 0 < report.exported < 6_000 and report.remaining == 6_000 - report.exported
    assert queue_states(conn)["leased"] == 0
    # What bounds the run: no claim with under a second left, and no stream allowed to outlive the
    # budget by more than 0.8 of the margin (gRPC ends the call at that deadline).
    assert claims.made and all(left >= 1.0 for left, _ in claims.made)
    assert streams and all(stream.deadline_given <= 3.0 + 0.8 * 1.0 for stream in streams)
    # A generous bound on the whole run, against a hang (the RPC timeout alone is 60 s).
    assert elapsed < 4.0 + 10
