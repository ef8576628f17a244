"""The fast JSONL reader gives exactly what json_format.Parse gives: the same message, or the same error class.

On the lines protojson writes for any event, and on those lines broken in the ways a person
or a careless program breaks them: other spellings of names and numbers, wrong types, nulls,
unknown or repeated keys, odd timestamps, nesting, and text that is not JSON at all.
"""

from __future__ import annotations

import json
import uuid

import pytest
from google.protobuf import json_format
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from telemetry_events import pb
from telemetry_events.ids import canonical_uuid, is_uuid
from telemetry_events.protojson import EncodeError, message_to_json
from telemetry_events.redaction import policy_from_env
from telemetry_export.protojson_reader import parse, parse_arguments
from telemetry_export.protojson_wire import wire_bytes

from .event_strategies import odd_texts, valid_events


def _outcome(parse_line, line: str):
    """The message's exact bytes (presence included), or the error class."""
    try:
        return parse_line(line).SerializeToString(deterministic=True)
    except json_format.ParseError:
        return json_format.ParseError


def _json_format(line: str):
    return json_format.Parse(line, pb.Event())


def _fast(line: str):
    return parse(line, pb.Event)


def _c_first(line: str):
    """The line as `record FILE` reads it: the C reader (telemetry_export._protojson_wire), the Python path for the
    lines it gives up on."""
    data = wire_bytes(line.encode(), pb.Event.DESCRIPTOR)
    return parse(line, pb.Event) if data is None else pb.Event.FromString(data)


# Each is held to json_format.Parse: the Python fast path alone, and the C reader in front of it.
READERS = {"python": _fast, "C first": _c_first}


@pytest.mark.parametrize("reader", READERS)
@settings(max_examples=150, deadline=None, derandomize=True)
@given(event=valid_events())
def test_every_line_protojson_writes_reads_back_as_json_format_reads_it(reader, event):
    try:
        line = message_to_json(event)
    except EncodeError:
        assume(False)  # NaN or an infinity inside a Struct has no protojson form
    assert _outcome(READERS[reader], line) == _outcome(_json_format, line)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(event=valid_events(finite=True))
def test_the_fast_path_takes_every_plain_line(event):
    line = message_to_json(event)
    arguments = parse_arguments(line, pb.Event.DESCRIPTOR)
    assert arguments is not None
    # The event as the line reads back: protojson writes -0.0 as "-0", as the reference's Go protojson does,
    # and a JSON reader reads that as 0.
    expected = json_format.Parse(line, pb.Event())
    assert pb.Event(**arguments).SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)


# Replacement values that break types, ranges and spellings.
odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1", "-0", "01", "1.5", "1e3", " 1", "0x10", "true", ""]),
    st.sampled_from(
        [
            "2026-01-02T03:04:05Z",
            "2026-01-02T03:04:05.123456789Z",
            "2026-01-02T03:04:05.1234567891Z",
            "2026-01-02T03:04:05+01:00",
            "2026-01-02t03:04:05z",
            "2026-02-30T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:60Z",
            "10000-01-01T00:00:00Z",
            "2026-01-02 03:04:05Z",
        ]
    ),
    odd_texts,
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.sampled_from(["a", "seconds", "nanos", "flags", "name"]), st.integers(0, 3), max_size=2),
)


def _paths(document, prefix=()):
    yield prefix
    if isinstance(document, dict):
        for key, value in document.items():
            yield from _paths(value, (*prefix, key))


def _replace(document, path, value):
    if not path:
        return value
    copy = dict(document)
    copy[path[0]] = _replace(document[path[0]], path[1:], value)
    return copy


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


@st.composite
def broken_lines(draw: st.DrawFn) -> str:
    document = json.loads(message_to_json(draw(valid_events(finite=True))))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(document) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        how = draw(st.sampled_from(["value", "snake name", "unknown key", "remove"]))
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        if how == "value":
            document = _replace(document, path, draw(odd_values))
        elif isinstance(parent, dict):
            value = parent[path[-1]]
            rest = {k: v for k, v in parent.items() if k != path[-1]}
            if how == "snake name":
                rest[_snake(path[-1])] = value
            elif how == "unknown key":
                rest[path[-1]], rest[draw(st.sampled_from(["colour", "Id", "feature_flags_x"]))] = value, 1
            document = _replace(document, path[:-1], rest) if path[:-1] else rest
    line = json.dumps(document)
    if draw(st.booleans()) and line.startswith("{") and len(line) > 2:
        key = draw(st.sampled_from(["id", "feature", "parameters", "user", "featureFlags"]))
        line = f'{{"{key}": {json.dumps(draw(odd_values))}, {line[1:]}'  # a key repeated, or given twice
    return line


@pytest.mark.parametrize("reader", READERS)
@settings(max_examples=400, deadline=None, derandomize=True)
@given(line=broken_lines())
def test_a_broken_line_gets_the_same_message_or_the_same_error_class(reader, line):
    assert _outcome(READERS[reader], line) == _outcome(_json_format, line)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "{",
        "[1, 2]",
        "null",
        '"an event"',
        '{"id": "x"} trailing',
        "{'id': 'x'}",
        '{"feature": NaN}',
        '{"parameters": {"metadata": {"a": Infinity}}}',
        '{"parameters": {"privateMetadata": {"a": -Infinity}}}',
        "[" * 5_000 + "]" * 5_000,
        '{"parameters": {"privateMetadata": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}}",
    ],
)
def test_text_that_is_not_a_plain_event_gets_json_formats_answer(line):
    assert _outcome(_fast, line) == _outcome(_json_format, line)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    event=valid_events(finite=True),
    allowlist=st.sampled_from(["", "example::*::a", "search::search::b,search::*::x", "cody.chat::a-b::x::a"]),
)
def test_redacting_arguments_gives_the_redacted_event(event, allowlist):
    event.parameters.private_metadata.update({"a": "kept if allowed", "x": 1, "b": {"nested": True}})
    policy = policy_from_env({"TELEMETRY_ALLOWLIST": allowlist} if allowlist else {})
    line = message_to_json(event)
    arguments = parse_arguments(line, pb.Event.DESCRIPTOR)
    assert arguments is not None
    redacted = pb.Event(**policy.redacted_arguments(arguments))
    read_back = json_format.Parse(line, pb.Event())  # -0.0 is written "-0" and reads back as 0
    assert redacted.SerializeToString(deterministic=True) == pb.Event.FromString(
        policy.redacted_bytes(read_back)
    ).SerializeToString(deterministic=True)


uuid_spellings = st.uuids().flatmap(
    lambda value: st.sampled_from(
        [str(value), str(value).upper(), value.hex, f"{{{value}}}", f"urn:uuid:{value}", str(value)[:-1] + "g"]
    )
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(value=uuid_spellings | odd_texts | st.text(alphabet="0123456789abcdefABCDEF-{}", max_size=40))
def test_uuid_checks_agree_with_the_uuid_module(value):
    try:
        expected = str(uuid.UUID(value))
    except ValueError:
        expected = None
    assert is_uuid(value) == (expected is not None)
    if expected is None:
        with pytest.raises(ValueError):
            canonical_uuid(value)
    else:
        assert canonical_uuid(value) == expected


SCALAR_PATHS = [
    ("id",),
    ("feature",),
    ("timestamp",),
    ("parameters", "version"),
    ("parameters", "legacyMetadata", "k"),
    ("parameters", "metadata", "k"),
    ("parameters", "privateMetadata", "k"),
    ("parameters", "privateMetadata"),
    ("user", "userId"),
    ("user", "anonymousUserId"),
    ("featureFlags", "flags", "k"),
    ("featureFlags", "flags"),
    ("source", "client"),
    ("marketingTracking", "url"),
]
ODD_VALUES = [
    None,
    True,
    0,
    -1,
    2**31,
    2**63,
    -(2**63) - 1,
    2**64,
    2**53 + 1,
    1.0,
    1.5,
    -0.0,
    1e308,
    "NaN",
    "Infinity",
    "-Infinity",
    "1",
    "-0",
    "01",
    "+1",
    " 1",
    "1_000",
    "1.0",
    "1e3",
    "0x10",
    "true",
    "",
    "2026-01-02T03:04:05.123Z",
    "2026-01-02T03:04:05+01:00",
    "2026-02-30T00:00:00Z",
    "0000-01-01T00:00:00Z",
    [],
    [1, "a"],
    {},
    {"seconds": 1},
]


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("path", SCALAR_PATHS, ids="/".join)
def test_each_field_given_each_odd_value_reads_as_json_format_reads_it(path, reader):
    for value in ODD_VALUES:
        document: dict = {"feature": "search", "action": "submit"}
        target = document
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
        line = json.dumps(document)
        assert _outcome(READERS[reader], line) == _outcome(_json_format, line), line


@pytest.mark.parametrize(
    "line",
    [
        '{"feature": "a", "feature": "a"}',
        '{"feature": "a:b", "feature": "a:b"}',
        '{"feature": "a", "feat\\u0075re": "b"}',
        '{"feature": "x\\u003a", "feature": "y"}',
        '{"feature": "x\\u003A", "action": "y:z"}',
        '{"feature": "x\\u003a", "feature": "y\\u003a"}',
        '{"action": "a\\u003a", "feature": "x", "feature": "y"}',
        '{"parameters": {"metadata": {"k": 1, "k": 2}}}',
        '{"parameters": {"privateMetadata": {"a": {"b": 1, "b": 1}}}}',
        '{"user": {"userId": "1"}, "user": {"anonymousUserId": "x"}}',
        '{"id": "0194f3a2-7c1e-7b2a-9d3e-5f6a7b8c9d0e", "timestamp": "2026-01-02T03:04:05Z", "id": "x"}',
    ],
)
def test_a_repeated_key_is_json_formats_to_judge(line):
    assert _outcome(_fast, line) == _outcome(_json_format, line)
