"""The lean event_logs translators write, row for row, what the translator they replaced wrote.

The Event translators (the Python API: log_line, which reads the wire bytes in C where it can,
the C reader on its own, and the Python translation) and the arguments translator (a JSONL line
read by protojson_reader) are compared with the translator of before
(tests/reference_event_logs.py) on the same odd events, by what Postgres stores: every column as
text, jsonb included.
"""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry_events import pb
from telemetry_events.nesting import MAX_PRIVATE_METADATA_DEPTH
from telemetry_events.protojson import message_to_json
from telemetry_export import event_logs
from telemetry_export.event_logs import log_line, log_line_from_arguments, postgres_timestamp, translated_line
from telemetry_export.protojson_reader import parse_arguments
from telemetry_export.store.recording import LOG_COLUMNS

from . import reference_event_logs as before
from .event_strategies import valid_events

TABLES = ("rows_before", "rows_now", "rows_c_reader", "rows_python")
COLUMNS_AS_TEXT = ", ".join(f"{column.strip()}::text" for column in LOG_COLUMNS.split(","))


@pytest.fixture
def tables(conn):
    cursor = conn.cursor()
    for table in TABLES:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {table} (LIKE event_logs INCLUDING DEFAULTS)")
    conn.commit()
    return conn


def _stored(conn, lines_by_table: dict[str, list[str]]) -> dict[str, list[tuple]]:
    cursor = conn.cursor()
    stored = {}
    for table, lines in lines_by_table.items():
        cursor.execute(f"TRUNCATE {table}")
        cursor.execute(
            f"COPY {table} ({LOG_COLUMNS}) FROM STDIN", stream=io.BytesIO(("\n".join(lines) + "\n").encode())
        )
        cursor.execute(f"SELECT {COLUMNS_AS_TEXT} FROM {table} ORDER BY event_id")  # noqa: S608 - the test's own
        stored[table] = [tuple(row) for row in cursor.fetchall()]
    conn.commit()
    return stored


def _stamp(event: pb.Event) -> str:
    return postgres_timestamp(event.timestamp.seconds, event.timestamp.nanos)


_settings = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _wire_line(event: pb.Event, event_id: str, timestamp: str, exportable: bool) -> str:
    """The C reader on its own, nested private metadata included (log_line leaves that to Python)."""
    line = event_logs._event_log_wire.log_line(
        event.SerializeToString(), event_id, timestamp, exportable, MAX_PRIVATE_METADATA_DEPTH
    )
    assert isinstance(line, str), "the reader gave up on what SerializeToString wrote"
    return line


@_settings
@given(events=st.lists(valid_events(), min_size=1, max_size=4), exportable=st.booleans())
def test_the_event_translators_store_the_rows_of_before(tables, events, exportable):
    stored = _stored(
        tables,
        {
            "rows_before": [before.log_line(event, exportable) for event in events],
            "rows_now": [log_line(event, event.id, _stamp(event), exportable) for event in events],
            "rows_c_reader": [_wire_line(event, event.id, _stamp(event), exportable) for event in events],
            "rows_python": [translated_line(event, event.id, _stamp(event), exportable) for event in events],
        },
    )
    for table in ("rows_now", "rows_c_reader", "rows_python"):
        assert stored[table] == stored["rows_before"], table


@_settings
@given(events=st.lists(valid_events(finite=True), min_size=1, max_size=4), exportable=st.booleans())
def test_the_arguments_translator_stores_the_rows_of_before(tables, events, exportable):
    arguments = [parse_arguments(message_to_json(event), pb.Event.DESCRIPTOR) for event in events]
    assert None not in arguments  # the fast path takes every line protojson writes for a finite event
    stored = _stored(
        tables,
        {
            "rows_before": [before.log_line(event, exportable) for event in events],
            "rows_now": [
                log_line_from_arguments(given, event.id, _stamp(event), exportable)
                for given, event in zip(arguments, events, strict=True)
            ],
        },
    )
    assert stored["rows_now"] == stored["rows_before"]
