"""The C reader of an Event's wire bytes (telemetry_export._event_log_wire) and where log_line uses it.

Row for row it must match the Python translation: tests/test_event_logs_translation.py compares
both with the translator of before through Postgres, and tests/test_event_nesting.py holds both
to the nesting rule. Here: it is built, it gives up on bytes SerializeToString never writes
(and the Python translation then decides), and events it must not serialize never reach it.
"""

from __future__ import annotations

import json
import struct

import pytest

from telemetry_events import pb
from telemetry_events.ids import new_event_id
from telemetry_events.nesting import MAX_PRIVATE_METADATA_DEPTH, NestedTooDeep
from telemetry_export import event_logs
from telemetry_export.sample_events import sample_events

from .wire_bytes import FIXED64, START_GROUP, VARINT, delimited, fixed64, tag, varint

STAMP = "2026-12-01 00:00:00.000000+00"
wire = event_logs._event_log_wire


def _event() -> pb.Event:
    event = next(iter(sample_events(1, seed=3)))
    event.parameters.private_metadata.fields["count"].number_value = 2.5
    event.user.anonymous_user_id = "anon-1"
    return event


def _without_parameters() -> bytes:
    """An event's bytes, so that parameters can be appended once, holding what a test needs."""
    event = _event()
    event.ClearField("parameters")
    return event.SerializeToString()


def _wire_line(data: bytes) -> str | None:
    return wire.log_line(data, "01a235c1-6cbb-7512-9cdc-812f20d28c53", STAMP, True, MAX_PRIVATE_METADATA_DEPTH)


def test_the_extension_is_built_where_the_suite_runs():
    # scripts/setup.sh compiles it (gcc and Python's headers); without it every test here would test nothing.
    assert wire is not None, "telemetry_export._event_log_wire is not compiled: run scripts/setup.sh"


def test_what_serialize_to_string_writes_is_read_into_the_python_translations_line():
    for event in sample_events(200, seed=5):
        line = _wire_line(event.SerializeToString())
        assert isinstance(line, str)
        assert _row(line) == _row(
            event_logs.translated_line(event, "01a235c1-6cbb-7512-9cdc-812f20d28c53", STAMP, True)
        )


def _value_entry(key: str, value: bytes) -> bytes:
    """A Struct's fields entry (key 1, Value 2)."""
    return delimited(1, delimited(1, key.encode()) + delimited(2, value))


# Each is applied to an event's bytes without parameters (_without_parameters), which it may append once.
ODD_BYTES = {
    "a string field given twice": lambda data: data + delimited(3, b"again"),
    "a message field given twice": lambda data: data + delimited(7, delimited(2, b"anon-2")),
    "a known field with another wire type": lambda data: data + tag(3, VARINT) + varint(1),
    "a map value with another wire type": lambda data: (
        data + delimited(6, delimited(5, delimited(1, b"k") + tag(2, VARINT) + varint(7)))
    ),
    "a map key given twice": lambda data: (
        data + delimited(6, delimited(2, delimited(1, b"k") + delimited(1, b"j") + tag(2, VARINT) + varint(7)))
    ),
    "a group": lambda data: data + tag(11, START_GROUP),
    "bytes that end inside a field": lambda data: data[:-1],
    "a length past the end": lambda data: data + tag(12, 2) + varint(1000),
    "a varint that never ends": lambda data: data + tag(12, VARINT) + b"\xff" * 11,
    "field number 0": lambda data: data + b"\x00\x00",
    "a Value with two kinds": lambda data: (
        data + delimited(6, delimited(3, _value_entry("k", delimited(3, b"text") + fixed64(2, struct.pack("<d", 1.0)))))
    ),
    "a Value with one kind twice": lambda data: (
        data + delimited(6, delimited(3, _value_entry("k", delimited(3, b"a") + delimited(3, b"b"))))
    ),
    # eight bytes of varint: read as a double, they would make a number
    "a number of another wire type": lambda data: (
        data + delimited(6, delimited(3, _value_entry("k", tag(2, VARINT) + varint(2**49))))
    ),
    "a Struct entry of another wire type": lambda data: data + delimited(6, delimited(3, tag(1, VARINT) + varint(1))),
    "a list value of another wire type": lambda data: (
        data + delimited(6, delimited(3, _value_entry("k", delimited(6, tag(1, VARINT) + varint(1)))))
    ),
    "a flags entry of another wire type": lambda data: (
        pb.Event(action="b").SerializeToString() + delimited(8, tag(1, VARINT) + varint(1))
    ),
    "private metadata given twice in one parameters": lambda data: (
        data + delimited(6, delimited(3, _value_entry("k", delimited(3, b"a"))) + delimited(3, b""))
    ),
    "text that is not UTF-8": lambda data: pb.Event(action="b").SerializeToString() + delimited(3, b"f\xff"),
}


@pytest.mark.parametrize("odd", ODD_BYTES, ids=list(ODD_BYTES))
def test_bytes_serialize_to_string_never_writes_make_it_give_up(odd):
    data = _without_parameters()
    assert isinstance(_wire_line(data), str)
    assert isinstance(_wire_line(data + delimited(6, delimited(3, _value_entry("k", delimited(3, b"a"))))), str)
    assert _wire_line(ODD_BYTES[odd](data)) is NotImplemented


def test_fields_unknown_to_a_value_or_an_entry_are_skipped():
    entry = delimited(1, delimited(1, b"k") + delimited(2, fixed64(2, struct.pack("<d", 0.5)) + fixed64(9, b"\0" * 8)))
    entry += delimited(1, delimited(1, b"j") + tag(7, VARINT) + varint(3) + delimited(2, delimited(3, b"v")))
    event = pb.Event(id=new_event_id(), feature="a", action="b")
    line = _wire_line(event.SerializeToString() + delimited(6, delimited(3, entry)))
    assert json.loads(_columns(line)[7]) == {"k": 0.5, "j": "v"}


def test_an_event_holding_unknown_fields_is_given_the_python_translations_line():
    # A known field number with the wrong wire type is kept by protobuf as an unknown field and written
    # back by SerializeToString: the reader gives up on it, and log_line falls back.
    event = pb.Event.FromString(
        _event().SerializeToString() + tag(3, VARINT) + varint(1) + tag(40, FIXED64) + b"\0" * 8
    )
    assert _wire_line(event.SerializeToString()) is NotImplemented
    assert event_logs.log_line(event, event.id, STAMP, False) == event_logs.translated_line(
        event, event.id, STAMP, False
    )


def test_the_marker_is_written_once_whatever_the_maps_hold():
    event = _event()
    event.parameters.legacy_metadata["telemetry.exportable"] = 5
    event.parameters.metadata["telemetry.exportable"] = 6.0
    for exportable in (True, False):
        line = wire.log_line(event.SerializeToString(), event.id, STAMP, exportable, MAX_PRIVATE_METADATA_DEPTH)
        public = _columns(line)[8]
        assert public.count("telemetry.exportable") == 1
        assert json.loads(public)["telemetry.exportable"] is exportable


def test_nested_private_metadata_is_left_to_the_python_translation(monkeypatch):
    read: list[bytes] = []

    class Recording:
        @staticmethod
        def log_line(data, *arguments):
            read.append(data)
            return wire.log_line(data, *arguments)

    monkeypatch.setattr(event_logs, "_event_log_wire", Recording)
    flat, in_struct, in_list = _event(), _event(), _event()
    in_struct.parameters.private_metadata.fields["deep"].struct_value.fields["k"].string_value = "v"
    in_list.parameters.private_metadata.fields["list"].list_value.values.add().string_value = "v"
    for event in (flat, in_struct, in_list):
        assert _row(event_logs.log_line(event, event.id, STAMP, True)) == _row(
            event_logs.translated_line(event, event.id, STAMP, True)
        )
    assert read == [flat.SerializeToString()]


def test_private_metadata_nested_far_beyond_the_limit_is_refused_without_the_encoder():
    # protobuf's encoder recurses once per level and overflows the stack on this one, killing the process.
    event = pb.Event(id=new_event_id(), feature="search", action="submit")
    struct_ = event.parameters.private_metadata
    for _ in range(30_000):
        struct_ = struct_.fields["k"].struct_value
    with pytest.raises(NestedTooDeep):
        event_logs.log_line(event, event.id, STAMP, True)


def test_without_the_extension_log_line_is_the_python_translation(monkeypatch):
    events = list(sample_events(20, seed=8))
    with_extension = [event_logs.log_line(event, event.id, STAMP, True) for event in events]
    monkeypatch.setattr(event_logs, "_event_log_wire", None)
    monkeypatch.setattr(event_logs, "_shallow", lambda parameters: pytest.fail("the extension's gate was used"))
    without = [event_logs.log_line(event, event.id, STAMP, True) for event in events]
    assert [_row(line) for line in without] == [_row(line) for line in with_extension]


def _row(line: str) -> list:
    """The columns, with the jsonb ones (argument, public_argument, feature_flags) read as JSON."""
    columns: list = _columns(line)
    for jsonb in (7, 8, 10):
        if columns[jsonb] is not None:
            columns[jsonb] = json.loads(columns[jsonb])
    return columns


def _columns(line: str) -> list[str | None]:
    """A COPY text line's columns, unescaped (None for \\N)."""
    escapes = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
    columns: list[str | None] = []
    for text in line.split("\t"):
        if text == "\\N":
            columns.append(None)
            continue
        out, chars = [], iter(text)
        for char in chars:
            out.append(escapes[next(chars)] if char == "\\" else char)
        columns.append("".join(out))
    return columns
