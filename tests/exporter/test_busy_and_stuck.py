"""Slow is not stuck: a busy gateway costs no attempt, a slow one is waited for (a silent one: test_timing.py).

Against the scripted gateway answering "busy" as agreed with the gateway side: RESOURCE_EXHAUSTED
whose details start with "gateway busy" and whose grpc-status-details-bin trailer carries a
google.rpc.RetryInfo; nothing of the unanswered messages was published.
"""

from __future__ import annotations

from .conftest import export_to, queue_states, record_samples


def _attempts(conn) -> dict[int, int]:
    cursor = conn.cursor()
    cursor.execute("SELECT attempts, count(*) FROM telemetry_events_export_queue GROUP BY attempts")
    found = {attempts: count for attempts, count in cursor.fetchall()}
    conn.commit()
    return found


def test_a_busy_gateway_costs_no_attempt_and_the_run_goes_on_after_the_delay(conn, scripted):
    record_samples(conn, 3_000, seed=51)
    # The first stream is shed after two events messages (the probe is message 0): come back in 0.3 s.
    gateway = scripted(busy=lambda stream, message: 0.3 if (stream, message) == (0, 2) else None)
    report = export_to(conn, gateway.url, batch_size=500, max_message_bytes=50_000, function_timeout_seconds=60)
    assert report.stopped_because == "backlog empty" and report.remaining == 0
    assert (report.exported, report.failed, report.quarantined) == (3_000, 0, 0)
    assert len(gateway.streams) >= 2  # it went on, on a new stream
    first = gateway.streams[0]
    assert 0 < len(first.acknowledged) < 3_000  # busy struck mid-stream, after one answered message
    # Rows the busy stream left unanswered were claimed once: their attempt was given back, then spent once.
    assert _attempts(conn) == {1: 3_000}
    assert queue_states(conn) == {"exported": 3_000, "quarantined": 0, "waiting": 0, "leased": 0}


def test_a_gateway_busy_for_longer_than_the_budget_allows_stops_the_run_without_an_outage(conn, scripted):
    record_samples(conn, 1_000, seed=52)
    gateway = scripted(busy=lambda stream, message: 120.0 if message == 2 else None)
    report = export_to(
        conn,
        gateway.url,
        batch_size=500,
        max_message_bytes=50_000,
        function_timeout_seconds=30,
        deadline_margin_seconds=5,
    )
    assert report.stopped_because.startswith(
        "gateway busy: retry after 120 s (gateway stream failed: RESOURCE_EXHAUSTED"
    )
    assert not report.gateway_unavailable and not report.instance_refused
    assert report.failed == 0 and 0 < report.exported < 1_000
    assert report.remaining == 1_000 - report.exported
    assert len(gateway.streams) == 1  # it did not wait two minutes for a retry the budget cannot hold
    assert _attempts(conn) == {0: report.remaining, 1: report.exported}


def test_a_slow_gateway_that_keeps_answering_is_not_cancelled(conn, scripted):
    record_samples(conn, 2_000, seed=53)
    # Each message takes 0.3 s; a batch of ten messages takes about 3 s, far over the 1 s deadline,
    # but an answer comes every 0.3 s: slow, not stuck.
    slow = scripted(delay_per_message=0.3)
    report = export_to(
        conn, slow.url, batch_size=1_000, max_message_bytes=25_000, rpc_timeout_seconds=1.0, function_timeout_seconds=60
    )
    assert report.stopped_because == "backlog empty"
    assert (report.exported, report.failed) == (2_000, 0)
    assert len(slow.streams) == 1 and max(len(s.received) for s in slow.streams) == 2_000  # never cancelled
