"""The C reader of plain protojson lines (telemetry_export._protojson_wire) against json_format.Parse.

Where it takes a line, its wire bytes must read back as the very message json_format.Parse
gives; where json_format refuses a line, it must give up, so that the Python path answers with
json_format's words. It must take every plain line protojson writes: otherwise it saves nothing.
test_protojson_reader.py reads its odd lines both ways (the Python path alone, and the C reader
first, as `record FILE` reads them); here are the C reader's own cases.
"""

from __future__ import annotations

import math

import pytest
from google.protobuf import descriptor_pb2, json_format
from hypothesis import given, settings

from telemetry_events import pb
from telemetry_events.export_mode import ExportScope
from telemetry_events.nesting import MAX_PRIVATE_METADATA_DEPTH, NestedTooDeep
from telemetry_events.protojson import message_to_json
from telemetry_events.redaction import policy_from
from telemetry_export import event_files, protojson_wire
from telemetry_export.protojson_reader import parse_arguments
from telemetry_export.protojson_wire import wire_bytes
from telemetry_export.sample_events import sample_events

from .event_strategies import valid_events
from .test_event_log_wire import _row
from .test_protojson_reader import _c_first, _json_format, _outcome

EVENT = pb.Event.DESCRIPTOR


def test_the_extension_is_built_where_the_suite_runs():
    assert protojson_wire._protojson_wire is not None, "telemetry_export._protojson_wire is not compiled"


@settings(max_examples=100, deadline=None, derandomize=True)
@given(event=valid_events(finite=True))
def test_the_c_reader_takes_every_plain_line(event):
    line = message_to_json(event)
    data = wire_bytes(line.encode(), EVENT)
    assert data is not None, line
    expected = json_format.Parse(line, pb.Event()).SerializeToString(deterministic=True)
    assert pb.Event.FromString(data).SerializeToString(deterministic=True) == expected


@pytest.mark.parametrize(
    "line",
    [
        '{"feature": "a", "feature": "a"}',
        '{"feature": "a", "feat\\u0075re": "b"}',
        '{"featureFlags": {}, "feature_flags": {}}',
        '{"user": {"userId": 1, "user_id": 1}}',
        '{"parameters": {"metadata": {"k": 1, "k": 2}}}',
        '{"parameters": {"metadata": {"k": 1, "\\u006b": 2}}}',
        '{"parameters": {"privateMetadata": {"a": 1, "a": 1}}}',
        '{"parameters": {"privateMetadata": {"a": {"b": 1, "b": 1}}}}',
        '{"parameters": {"privateMetadata": {"a": [{"b": 1, "b": 2}]}}}',
        '{"user": {"userId": "1"}, "user": {"anonymousUserId": "x"}}',
    ],
)
def test_a_repeated_key_at_any_level_is_given_up(line):
    assert wire_bytes(line.encode(), EVENT) is None
    assert _outcome(_c_first, line) == _outcome(_json_format, line)


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"   ",
        b"[]",
        b'{"feature": "a"} {}',
        b'{"feature": "a",}',
        b'{"feature" "a"}',
        b'{"feature": "a\x01"}',  # a raw control character
        b'{"feature": "a\x01b", "action": "c"}',
        b'{"feature": "\xff"}',  # not UTF-8
        b'{"feature": "\xed\xa0\x80"}',  # a surrogate, encoded
        b'{"feature": "\xc0\xaf"}',  # an overlong form
        b'{"feature": "\\ud800"}',  # a lone high surrogate
        b'{"feature": "\\udc00x"}',  # a lone low surrogate
        b'{"feature": "\\x41"}',
        b'{"feature": "a',
        b'{"parameters": {"metadata": {"k": 1e400}}}',
        b'{"parameters": {"metadata": {"k": 01}}}',
        b'{"parameters": {"metadata": {"k": 1.}}}',
        b'{"parameters": {"metadata": {"k": .5}}}',
        b'{"parameters": {"metadata": {"k": NaN}}}',
        b'{"parameters": {"privateMetadata": {"k": -Infinity}}}',
        b'{"parameters": {"version": 1.0}}',
        b'{"parameters": {"version": "1"}}',
        b'{"parameters": {"version": 2147483648}}',
        b'{"user": {"userId": "01"}}',
        b'{"user": {"userId": "9223372036854775808"}}',
        b'{"user": {"userId": 1e2}}',
        b'{"timestamp": "2026-01-02T03:04:05z"}',
        b'{"timestamp": "2026-01-02T03:04:05.1234567891Z"}',
        b'{"timestamp": "2026-01-02T03:04:05.Z"}',
        b'{"timestamp": "2026-02-29T00:00:00Z"}',
        b'{"timestamp": "1900-02-29T00:00:00Z"}',
        b'{"timestamp": "2026-01-02T24:00:00Z"}',
        b'{"timestamp": "2026-01-02T03:04:60Z"}',
        b'{"timestamp": "0000-01-01T00:00:00Z"}',
        b'{"timestamp": "2026-01-02T03:04:05+00:00"}',
        b'{"interaction": {"geolocation": null}}',
        b'{"colour": "red"}',
    ],
)
def test_what_is_not_plain_is_given_up(line):
    assert wire_bytes(line, EVENT) is None


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"parameters": {"metadata": {"k": -0}}}', 0.0),  # a JSON reader reads "-0" as the integer 0
        ('{"parameters": {"metadata": {"k": -0.0}}}', -0.0),
        ('{"parameters": {"metadata": {"k": 9007199254740993}}}', 9007199254740992.0),
        ('{"parameters": {"metadata": {"k": 1E-2}}}', 0.01),
        ('{"parameters": {"metadata": {"k": 2.5e+3}}}', 2500.0),
    ],
)
def test_numbers_are_read_as_a_json_reader_then_float_reads_them(line, expected):
    event = pb.Event.FromString(wire_bytes(line.encode(), EVENT))
    value = event.parameters.metadata["k"]
    assert value == expected and math.copysign(1, value) == math.copysign(1, expected)
    assert _outcome(_c_first, line) == _outcome(_json_format, line)


@pytest.mark.parametrize(
    "line",
    [
        ' \t{ "feature" : "a\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00" , "action":"b" }\r\n',
        '{"feature": "é😀", "user": {"userId": "-9223372036854775808", "anonymousUserId": ""}}',
        '{"user": {"userId": -9223372036854775808}}',
        '{"timestamp": "2024-02-29T23:59:59.5Z", "parameters": {"version": -2147483648}}',
        '{"timestamp": "0001-01-01T00:00:00Z"}',
        '{"timestamp": "9999-12-31T23:59:59.999999999Z"}',
        '{"timestamp": "1969-12-31T23:59:59.000000001Z"}',
        '{"parameters": {"privateMetadata": {"": null, "l": [], "o": {}, "t": true, "f": false, "n": 1}}}',
        '{"source": {}, "featureFlags": {"flags": {}}, "marketingTracking": {"url": ""}}',
    ],
)
def test_plain_lines_with_every_form_read_as_json_format_reads_them(line):
    data = wire_bytes(line.encode(), EVENT)
    assert data is not None, line
    assert pb.Event.FromString(data).SerializeToString(deterministic=True) == _outcome(_json_format, line)


def _private_metadata_nested(structs: int) -> bytes:
    return ('{"parameters": {"privateMetadata": ' + '{"a": ' * structs + "1" + "}" * structs + "}}").encode()


def test_private_metadata_nested_too_deep_is_given_up_for_the_python_path_to_refuse():
    # A Struct level costs three message levels: the deepest the gateway decodes is taken, one more is not.
    deepest = (MAX_PRIVATE_METADATA_DEPTH - 1) // 3
    assert wire_bytes(_private_metadata_nested(deepest), EVENT) is not None
    assert wire_bytes(_private_metadata_nested(deepest + 1), EVENT) is None
    parse_arguments(_private_metadata_nested(deepest).decode(), EVENT)
    with pytest.raises(NestedTooDeep):
        parse_arguments(_private_metadata_nested(deepest + 1).decode(), EVENT)


@pytest.mark.parametrize("leaf", ["1", "{}", "[]", "null"])
@pytest.mark.parametrize("lists", [0, 1, 2])
@pytest.mark.parametrize("structs", range(28, 34))
def test_nesting_is_given_up_exactly_where_the_python_path_refuses_it(structs, lists, leaf):
    value = leaf
    for step in ["list"] * lists + ["struct"] * structs:
        value = f"[{value}]" if step == "list" else f'{{"a": {value}}}'
    line = f'{{"parameters": {{"privateMetadata": {{"top": {value}}}}}}}'
    try:
        parse_arguments(line, EVENT)
    except NestedTooDeep:
        refused = True
    else:
        refused = False
    assert (wire_bytes(line.encode(), EVENT) is None) == refused


@pytest.mark.parametrize("field", ["privateMetadata", "metadata"])
def test_an_object_of_many_keys_is_left_to_the_python_path(field):
    # Keys are checked against every earlier one: past 256 a line would cost the square of its length.
    def line(keys: int) -> str:
        members = ", ".join(f'"k{number}": {number}' for number in range(keys))
        return f'{{"parameters": {{"{field}": {{{members}}}}}}}'

    assert wire_bytes(line(256).encode(), EVENT) is not None
    assert wire_bytes(line(257).encode(), EVENT) is None
    assert _outcome(_c_first, line(257)) == _outcome(_json_format, line(257))


def test_json_nested_far_beyond_the_schema_is_given_up_without_a_crash():
    assert wire_bytes(b'{"parameters": {"privateMetadata": ' + b'{"a": [' * 100_000, EVENT) is None
    assert wire_bytes(b"[" * 100_000, EVENT) is None


def test_any_message_type_is_read_from_its_descriptor_and_kinds_it_does_not_read_are_given_up():
    field = descriptor_pb2.FieldDescriptorProto
    line = '{"name": "n", "number": 7, "jsonName": "j", "proto3Optional": false, "typeName": ""}'
    data = wire_bytes(line.encode(), field.DESCRIPTOR)
    assert data is not None
    expected = json_format.Parse(line, field()).SerializeToString(deterministic=True)
    assert field.FromString(data).SerializeToString(deterministic=True) == expected
    assert wire_bytes(b'{"name": "n", "label": "LABEL_OPTIONAL"}', field.DESCRIPTOR) is None  # an enum
    assert wire_bytes(b'{"name": "n", "options": {}}', field.DESCRIPTOR) is None  # a well-known type it does not read


def test_without_the_extension_every_line_is_left_to_the_python_path(monkeypatch):
    monkeypatch.setattr(protojson_wire, "_protojson_wire", None)
    assert wire_bytes(b'{"feature": "a"}', EVENT) is None


def test_a_file_records_the_same_rows_read_either_way(monkeypatch):
    lines = [message_to_json(event).encode() for event in sample_events(300, seed=11)]
    policy, scope = policy_from(), ExportScope()
    read_in_c = list(event_files.read_event_rows(lines, "f.jsonl", policy, scope))
    monkeypatch.setattr(event_files, "wire_bytes", lambda line, descriptor: None)
    read_in_python = list(event_files.read_event_rows(lines, "f.jsonl", policy, scope))
    assert [row.queue_line for row in read_in_c] == [row.queue_line for row in read_in_python]
    assert [_row(row.log_line) for row in read_in_c] == [_row(row.log_line) for row in read_in_python]
