"""The export job against real gRPC servers and a real Postgres: at least once, within budget."""

from __future__ import annotations

import threading

from telemetry_events import pb
from telemetry_export.exporter import NOT_ACKNOWLEDGED

from .conftest import export_to, exporter_settings, message_body, queue_states, record_samples


def test_a_backlog_drains_in_one_run_through_the_real_gateway(conn, live_gateway):
    ids = record_samples(conn, 3_500, seed=11)
    settings_overrides = {
        "identity": exporter_settings("").identity.__class__(
            license_key=live_gateway.license_key, instance_id="test-instance", external_url="https://sg.example.com"
        )
    }
    report = export_to(conn, live_gateway.url, **settings_overrides)
    assert report.summary() | {"duration_s": 0} == {
        "exported": 3_500,
        "failed": 0,
        "quarantined": 0,
        "withheld": 0,
        "batches": 4,
        "remaining": 0,
        "duration_s": 0,
        "stopped_because": "backlog empty",
    }
    assert queue_states(conn) == {"exported": 3_500, "quarantined": 0, "waiting": 0, "leased": 0}
    messages = live_gateway.pull(3_500)
    assert sorted(m.attributes["event.id"] for m in messages) == sorted(ids)
    for message in messages:
        body = message_body(message)
        assert "marketingTracking" not in body["event"]
        assert set(body["event"]["parameters"].get("privateMetadata", {})) <= {"testField"}
        assert live_gateway.license_key not in message.data.decode()


def test_metadata_comes_first_and_messages_stay_under_the_limit(conn, scripted):
    gateway = scripted()
    record_samples(conn, 2_000, seed=12)
    report = export_to(conn, gateway.url, max_message_bytes=100_000)
    assert report.exported == 2_000
    [stream] = gateway.streams
    assert stream.request_id == report.request_id and stream.identifier_kind == "unlicensed_instance"
    assert max(stream.message_sizes) <= 100_000
    assert len(stream.message_sizes) >= 2_000 * 250 // 100_000


def test_only_acknowledged_rows_are_marked_and_the_rest_go_out_next_run(conn, scripted):
    ids = record_samples(conn, 1_200, seed=13)
    refusing = scripted(acknowledge=lambda event: event.id[-1] in "02468ace")
    first = export_to(conn, refusing.url)
    acknowledged = set(refusing.streams[0].acknowledged)
    assert first.exported == len(acknowledged) and first.failed == 1_200 - len(acknowledged)
    assert 0 < len(acknowledged) < 1_200
    cursor = conn.cursor()
    cursor.execute(
        "SELECT id::text, exported_at IS NOT NULL, attempts, last_error, leased_until"
        " FROM telemetry_events_export_queue"
    )
    for row_id, exported, attempts, last_error, leased_until in cursor.fetchall():
        assert exported == (row_id in acknowledged)
        assert attempts == 1 and leased_until is None
        assert last_error == (None if exported else NOT_ACKNOWLEDGED)
    conn.commit()

    accepting = scripted()
    second = export_to(conn, accepting.url)
    assert second.exported == 1_200 - len(acknowledged)
    assert set(accepting.received_ids()) == set(ids) - acknowledged  # nothing acknowledged is sent again
    assert queue_states(conn)["exported"] == 1_200


def test_rows_refused_too_often_among_accepted_ones_are_quarantined_with_their_reason(conn, scripted):
    ids = record_samples(conn, 300, seed=14)
    stubborn = ids[7]
    gateway = scripted(acknowledge=lambda event: event.id != stubborn)
    for run in range(3):
        if run:
            ids += record_samples(conn, 100, seed=140 + run)  # the stubborn row is refused among accepted ones
        export_to(conn, gateway.url, max_attempts=3)
    cursor = conn.cursor()
    cursor.execute(
        "SELECT id::text, quarantine_reason FROM telemetry_events_export_queue WHERE quarantined_at IS NOT NULL"
    )
    assert [list(r) for r in cursor.fetchall()] == [[stubborn, f"{NOT_ACKNOWLEDGED} after 3 attempts"]]
    conn.commit()
    assert queue_states(conn) == {"exported": 499, "quarantined": 1, "waiting": 0, "leased": 0}


def test_a_gateway_refusing_a_whole_batch_stops_the_run_without_spending_attempts(conn, scripted):
    record_samples(conn, 2_500, seed=19)
    gateway = scripted(acknowledge=lambda event: False)  # as when Pub/Sub is down behind the gateway
    report = export_to(conn, gateway.url, max_attempts=1)
    assert report.gateway_unavailable and report.stopped_because.endswith("acknowledged none of 1000 events")
    assert report.quarantined == 0 and report.remaining == 2_500
    assert len(gateway.received_ids()) <= 2_000  # it stopped instead of churning through the backlog
    cursor = conn.cursor()
    cursor.execute("SELECT DISTINCT attempts, quarantined_at FROM telemetry_events_export_queue")
    assert [list(r) for r in cursor.fetchall()] == [[0, None]]
    conn.commit()


def test_undecodable_and_invalid_rows_are_quarantined_while_the_rest_flows(conn, scripted):
    ids = record_samples(conn, 500, seed=15)
    cursor = conn.cursor()
    cursor.execute(
        "UPDATE telemetry_events_export_queue SET payload_pb = '\\xdeadbeef'::bytea WHERE id = %s", (ids[0],)
    )
    invalid = pb.Event(id=ids[1], feature="Not Valid", action="x")
    invalid.timestamp.GetCurrentTime()
    cursor.execute(
        "UPDATE telemetry_events_export_queue SET payload_pb = %s WHERE id = %s", (invalid.SerializeToString(), ids[1])
    )
    elsewhere = pb.Event(id=ids[3], feature="search", action="submit")
    elsewhere.timestamp.GetCurrentTime()
    cursor.execute(
        "UPDATE telemetry_events_export_queue SET payload_pb = %s WHERE id = %s",
        (elsewhere.SerializeToString(), ids[2]),
    )
    conn.commit()
    gateway = scripted()
    report = export_to(conn, gateway.url)
    assert (report.exported, report.quarantined, report.remaining) == (497, 3, 0)
    cursor.execute(
        "SELECT id::text, quarantine_reason FROM telemetry_events_export_queue WHERE quarantined_at IS NOT NULL"
    )
    reasons = dict(cursor.fetchall())
    assert reasons[ids[0]].startswith("payload is not a telemetry Event")
    assert reasons[ids[1]].startswith("invalid event: feature 'Not Valid'")
    assert reasons[ids[2]].startswith("payload's event ID")
    assert not {ids[0], ids[1], ids[2]} & set(gateway.received_ids())


def test_an_unreachable_gateway_releases_every_row_without_spending_an_attempt(conn):
    record_samples(conn, 150, seed=16)
    from localdev.ports import free_port

    report = export_to(conn, f"http://127.0.0.1:{free_port()}")
    assert report.gateway_unavailable and report.exported == 0 and report.remaining == 150
    cursor = conn.cursor()
    cursor.execute(
        "SELECT DISTINCT attempts, leased_until IS NULL, last_error LIKE 'gateway stream failed: UNAVAILABLE%%'"
        " FROM telemetry_events_export_queue"
    )
    assert [list(r) for r in cursor.fetchall()] == [[0, True, True]]
    conn.commit()


def test_two_exporters_at_once_never_send_the_same_row(connections, scripted):
    with connections.connection() as conn:
        conn.cursor().execute("TRUNCATE telemetry_events_export_queue, event_logs")
        conn.commit()
        ids = record_samples(conn, 20_000, seed=18)
    gateway = scripted()
    reports, errors = [], []

    def exporter():
        try:
            with connections.connection() as own:
                reports.append(export_to(own, gateway.url, batch_size=1_000))
        except Exception as error:  # noqa: BLE001 - surfaced below
            errors.append(error)

    threads = [threading.Thread(target=exporter) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    received = gateway.received_ids()
    assert len(received) == len(set(received)) == 20_000  # no row was ever in flight twice
    assert set(received) == set(ids)
    assert sorted(r.exported for r in reports)[0] > 0  # both did real work
    assert sum(r.exported for r in reports) == 20_000
