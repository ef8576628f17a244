"""Recording into both tables on a real Postgres: redacted queue, unredacted local view."""

from __future__ import annotations

import json
import threading

import pytest

from telemetry_events import pb
from telemetry_events.export_mode import ExportMode, ExportScope
from telemetry_events.ids import new_event_id
from telemetry_events.redaction import policy_from, policy_from_env
from telemetry_events.validation import InvalidEventError
from telemetry_export.recording import record_events
from telemetry_export.sample_events import sample_events

POLICY = policy_from()
ALL = ExportScope()


def _rows(conn, sql: str, params=()) -> list[list]:
    cursor = conn.cursor()
    cursor.execute(sql, params)
    return [list(row) for row in cursor.fetchall()]


def _queue_payloads(conn) -> dict[str, pb.Event]:
    return {
        str(i): pb.Event.FromString(p)
        for i, p in _rows(conn, "SELECT id, payload_pb FROM telemetry_events_export_queue")
    }


def test_every_event_reaches_both_tables_and_the_queue_holds_it_redacted(conn):
    events = list(sample_events(50, seed=3))
    result = record_events(conn, events, POLICY, ALL)
    assert (result.recorded, result.queued, result.duplicate_ids) == (50, 50, [])
    queued = _queue_payloads(conn)
    assert set(queued) == {e.id for e in events}
    for event in events:
        sent = queued[event.id]
        assert not sent.HasField("marketing_tracking")
        if (event.feature, event.action) == ("example", "example"):
            assert set(sent.parameters.private_metadata) == {"testField"}
        else:
            assert not sent.parameters.HasField("private_metadata")
        expected = pb.Event()
        expected.CopyFrom(event)
        expected.ClearField("marketing_tracking")
        expected.parameters.ClearField("private_metadata")
        sent.parameters.ClearField("private_metadata")
        assert sent == expected  # nothing else was touched
    assert _rows(conn, "SELECT count(*) FROM event_logs") == [[50]]


def test_queue_timestamps_and_ids_come_from_the_event(conn):
    event = next(sample_events(1))
    event.timestamp.FromJsonString("2026-01-02T03:04:05.123456Z")
    record_events(conn, [event], POLICY, ALL)
    [(event_id, timestamp)] = _rows(
        conn,
        "SELECT id::text, to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM "
        "telemetry_events_export_queue",
    )
    assert (event_id, timestamp) == (event.id, "2026-01-02 03:04:05.123456")


def test_event_logs_keep_the_local_unredacted_view(conn):
    event = pb.Event(id=new_event_id(), feature="search", action="submit")
    event.timestamp.FromJsonString("2026-01-02T03:04:05Z")
    event.source.server.version = "6.1.0"
    event.source.client.name = "VSCODE"
    event.source.client.version = "1.2"
    event.parameters.metadata["count"] = 2.5
    event.parameters.legacy_metadata["old"] = 7
    event.parameters.private_metadata.update({"query": "secret\ttab", "nested": {"a": [1, "x"]}})
    event.parameters.billing_metadata.product = "cody"
    event.parameters.billing_metadata.category = "core"
    event.user.user_id = 12
    event.feature_flags.flags["new-ui"] = "true"
    event.marketing_tracking.url = "https://example.com/page"
    event.marketing_tracking.cohort_id = "c1"
    event.marketing_tracking.referrer = "https://ref.example.com"
    record_events(conn, [event], POLICY, ALL)
    [row] = _rows(
        conn,
        "SELECT event_id::text, name, url, user_id, anonymous_user_id, source, argument::text, public_argument::text,"
        " version, feature_flags::text, cohort_id, referrer, billing_product_category, client FROM event_logs",
    )
    assert row[:6] == [event.id, "search.submit", "https://example.com/page", 12, "unknown", "VSCODE"]
    assert json.loads(row[6]) == {"query": "secret\ttab", "nested": {"a": [1, "x"]}}
    assert json.loads(row[7]) == {"count": 2.5, "old": 7, "telemetry.exportable": True}
    assert row[8] == "6.1.0"
    assert json.loads(row[9]) == {"new-ui": "true"}
    assert row[10:] == ["c1", "https://ref.example.com", "cody:core", "VSCODE 1.2"]


def test_an_event_without_client_or_user_is_a_backend_event_of_an_unknown_user(conn):
    event = pb.Event(id=new_event_id(), feature="cron", action="ran")
    event.timestamp.GetCurrentTime()
    record_events(conn, [event], POLICY, ALL)
    assert _rows(conn, "SELECT source, anonymous_user_id, user_id, argument FROM event_logs") == [
        ["BACKEND", "unknown", 0, None]
    ]


def test_a_custom_allowlist_lets_its_keys_leave(conn):
    policy = policy_from_env({"TELEMETRY_ALLOWLIST": "search::submit::repository"})
    event = next(e for e in sample_events(10, seed=1) if e.feature == "search" and e.action == "submit")
    record_events(conn, [event], policy, ALL)
    [sent] = _queue_payloads(conn).values()
    assert set(sent.parameters.private_metadata) == {"repository"}


def test_export_modes_decide_what_is_queued_but_everything_is_logged(conn):
    events = list(sample_events(16, seed=2))
    listed = ExportScope(ExportMode.LISTED_FEATURES, frozenset({"search"}))
    result = record_events(conn, events, POLICY, listed)
    searches = {e.id for e in events if e.feature == "search"}
    assert (result.recorded, result.queued) == (16, len(searches))
    assert set(_queue_payloads(conn)) == searches
    exportable = dict(
        _rows(conn, "SELECT event_id::text, (public_argument->>'telemetry.exportable')::bool FROM event_logs")
    )
    assert {i for i, flag in exportable.items() if flag} == searches

    more = list(sample_events(5, seed=3))
    disabled = record_events(conn, more, POLICY, ExportScope(ExportMode.DISABLED))
    assert (disabled.recorded, disabled.queued) == (5, 0)


def test_duplicates_are_skipped_and_reported_not_fatal(conn):
    events = list(sample_events(6, seed=4))
    record_events(conn, events[:3], POLICY, ALL)
    repeat = pb.Event()
    repeat.CopyFrom(events[4])
    result = record_events(conn, events[2:] + [repeat], POLICY, ALL)
    assert result.recorded == 3 and result.queued == 3
    assert sorted(result.duplicate_ids) == sorted([events[2].id, events[4].id])
    assert _rows(conn, "SELECT count(*) FROM telemetry_events_export_queue") == [[6]]
    assert _rows(conn, "SELECT count(*) FROM event_logs") == [[6]]


def test_another_spelling_of_a_recorded_id_is_a_duplicate(conn):
    event = next(sample_events(1))
    record_events(conn, [event], POLICY, ALL)
    shouted = pb.Event()
    shouted.CopyFrom(event)
    shouted.id = event.id.upper().replace("-", "")
    result = record_events(conn, [shouted], POLICY, ALL)
    assert result.duplicate_ids == [event.id] and result.recorded == 0


def test_an_invalid_event_records_nothing_of_the_batch(conn):
    events = list(sample_events(12, seed=5))
    events[9].feature = "Bad Feature"
    with pytest.raises(InvalidEventError, match="event 10: feature 'Bad Feature'"):
        record_events(conn, events, POLICY, ALL, chunk_size=4)  # two chunks were already written
    assert _rows(conn, "SELECT count(*) FROM event_logs") == [[0]]
    assert _rows(conn, "SELECT count(*) FROM telemetry_events_export_queue") == [[0]]
    assert conn.cursor().execute("SELECT 1") is None  # the connection is still usable


def test_batches_larger_than_a_chunk_are_written_whole(conn):
    chunks = []
    result = record_events(
        conn, sample_events(2_503, seed=6), POLICY, ALL, chunk_size=500, on_chunk=lambda r: chunks.append(r.recorded)
    )
    assert result.recorded == 2_503 and result.queued == 2_503
    assert chunks == [500, 1000, 1500, 2000, 2500, 2503]
    assert _rows(conn, "SELECT count(*) FROM telemetry_events_export_queue") == [[2_503]]


def test_a_chunk_larger_than_one_piece_of_copy_data_arrives_byte_for_byte(conn):
    # Each event carries 3 KB of private metadata (kept in event_logs, stripped from the queue): 600
    # of them make about 1.8 MB of event_logs COPY text, sent in 1 MiB pieces whose seam falls in a row.
    events = list(sample_events(600, seed=8))
    for n, event in enumerate(events):
        event.parameters.private_metadata.fields["blob"].string_value = f"{n:05d}" + "é" * 1_500
    record_events(conn, events, POLICY, ALL, chunk_size=600)

    stored = dict(_rows(conn, "SELECT id::text, payload_pb FROM telemetry_events_export_queue"))
    assert {event_id: bytes(payload) for event_id, payload in stored.items()} == {
        event.id: POLICY.redacted_bytes(event) for event in events
    }
    logged = dict(_rows(conn, "SELECT event_id::text, argument->>'blob' FROM event_logs"))
    assert logged == {event.id: f"{n:05d}" + "é" * 1_500 for n, event in enumerate(events)}


def test_text_that_postgres_cannot_store_is_replaced_in_the_local_view_only(conn):
    event = next(sample_events(1))
    event.source.client.name = "bad\x00name\nwith\\escapes"
    event.parameters.private_metadata.update({"k\x00": "v\x00", "nan": float("nan")})
    event.parameters.metadata["inf"] = float("inf")
    record_events(conn, [event], POLICY, ALL)
    [[source, argument, public]] = _rows(conn, "SELECT source, argument, public_argument FROM event_logs")
    assert source == "bad\ufffdname\nwith\\escapes"
    assert argument["k\ufffd"] == "v\ufffd" and argument["nan"] is None
    assert public["inf"] is None
    [sent] = _queue_payloads(conn).values()
    assert sent.source.client.name == "bad\x00name\nwith\\escapes"  # the exported bytes are untouched


def test_concurrent_writers_of_the_same_ids_record_each_once(connections):
    events = list(sample_events(3_000, seed=7))
    results, errors = [], []
    barrier = threading.Barrier(2)

    def writer():
        try:
            with connections.connection() as own:
                barrier.wait()
                results.append(record_events(own, events, POLICY, ALL, chunk_size=250))
        except Exception as error:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(error)

    with connections.connection() as conn:
        conn.cursor().execute("TRUNCATE telemetry_events_export_queue, event_logs")
        conn.commit()
    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(r.recorded for r in results) == 3_000
    assert sum(len(r.duplicate_ids) for r in results) == 3_000
    with connections.connection() as conn:
        assert _rows(conn, "SELECT count(*) FROM telemetry_events_export_queue") == [[3_000]]


def _nested_private_metadata(event: pb.Event, levels: int) -> pb.Event:
    struct = event.parameters.private_metadata
    for _ in range(levels):
        struct = struct.fields["deeper"].struct_value
    struct.fields["leaf"].string_value = "x"
    return event


def test_an_event_the_gateway_could_not_decode_fails_the_batch_naming_the_nesting(conn):
    # 32 Struct levels decode as a bare Event, but not two levels deeper, inside RecordEventsRequest.
    events = list(sample_events(12, seed=5))
    _nested_private_metadata(events[9], 32)
    pb.Event.FromString(events[9].SerializeToString())
    with pytest.raises(InvalidEventError, match="event 10: parameters.private_metadata nests more than 97 message"):
        record_events(conn, events, POLICY, ALL, chunk_size=4)
    assert _rows(conn, "SELECT count(*) FROM event_logs") == [[0]]
    assert _rows(conn, "SELECT count(*) FROM telemetry_events_export_queue") == [[0]]


def test_the_deepest_decodable_event_is_recorded_whole_in_the_local_view(conn):
    event = _nested_private_metadata(next(sample_events(1)), 31)
    result = record_events(conn, [event], policy_from_env({"TELEMETRY_ALLOWLIST": "search::*::deeper"}), ALL)
    assert result.recorded == 1
    [[argument]] = _rows(conn, "SELECT argument FROM event_logs")
    depth = 0
    while "deeper" in argument:
        argument, depth = argument["deeper"], depth + 1
    assert depth == 31 and argument == {"leaf": "x"}


@pytest.mark.parametrize(
    ("seconds", "nanos", "message"),
    [
        (0, -1, "timestamp nanos -1 is outside 0 to 999,999,999"),
        (0, 1_000_000_000, "timestamp nanos 1000000000 is outside 0 to 999,999,999"),
        (253_402_300_800, 0, "timestamp seconds 253402300800 is outside years 0001 to 9999"),
        (-62_135_596_801, 0, "timestamp seconds -62135596801 is outside years 0001 to 9999"),
    ],
)
def test_out_of_range_timestamps_are_invalid_events_not_driver_errors(conn, seconds, nanos, message):
    events = list(sample_events(3, seed=2))
    events[1].timestamp.seconds, events[1].timestamp.nanos = seconds, nanos
    with pytest.raises(InvalidEventError) as raised:
        record_events(conn, events, POLICY, ALL)
    assert str(raised.value) == f"event 2: {message}"
    assert _rows(conn, "SELECT count(*) FROM event_logs") == [[0]]


@pytest.mark.parametrize(
    ("seconds", "nanos", "stored"),
    [
        (-62_135_596_800, 0, "0001-01-01 00:00:00.000000"),
        (-61_788_697_200 + 123, 456_789, "0011-12-30 01:02:03.000456"),
        (253_402_300_799, 999_999_999, "9999-12-31 23:59:59.999999"),
    ],
)
def test_the_first_and_last_years_are_stored_as_they_are(conn, seconds, nanos, stored):
    event = next(sample_events(1))
    event.timestamp.seconds, event.timestamp.nanos = seconds, nanos
    record_events(conn, [event], POLICY, ALL)
    text = "to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
    assert _rows(conn, f"SELECT {text} FROM event_logs") == [[stored]]  # noqa: S608
    assert _rows(conn, f"SELECT {text} FROM telemetry_events_export_queue") == [[stored]]  # noqa: S608


def test_an_id_repeated_chunks_apart_is_reported_once_as_a_duplicate(conn):
    events = list(sample_events(10, seed=8))
    again = pb.Event()
    again.CopyFrom(events[1])
    again.id = events[1].id.upper()
    result = record_events(conn, events + [again], POLICY, ALL, chunk_size=3)
    assert (result.recorded, result.queued, result.duplicate_ids) == (10, 10, [events[1].id])
    assert _rows(conn, "SELECT count(*) FROM event_logs") == [[10]]
