"""The gateway's JSON rendering is json_format.MessageToDict's, on any event whatsoever, with every number
written as the reference gateway (Go's protojson) writes it."""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_events import pb
from telemetry_events.protojson import EncodeError, dumps, message_to_dict, message_to_json

from .event_strategies import any_events


def go_protojson_number(x: float) -> str:
    """How Go's protojson writes a finite double: the rules of protobuf-go's internal/encoding/json
    `appendFloat`, written here independently of the code under test.

    strconv.AppendFloat(x, fmt, -1, 64) gives the shortest digits that read back exactly (Python's
    repr finds the same digits); fmt is 'f' (positional) when 1e-6 <= |x| < 1e21, else 'e', which
    writes at least two exponent digits with a sign; then "e-0d" becomes "e-d".
    """
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(x)).as_tuple()
    digits = "".join(map(str, digit_tuple))
    while len(digits) > 1 and digits.endswith("0"):
        digits, exponent = digits[:-1], exponent + 1
    point = len(digits) + exponent  # where the decimal point falls, counted from the first digit
    if 1e-6 <= abs(x) < 1e21:
        if exponent >= 0:
            body = digits + "0" * exponent
        elif point > 0:
            body = digits[:point] + "." + digits[point:]
        else:
            body = "0." + "0" * -point + digits
    else:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        written = f"{point - 1:+03d}"
        if written.startswith("-0"):
            written = "-" + written[2:]
        body = f"{mantissa}e{written}"
    return ("-" if sign else "") + body


def number_tokens(text: str) -> list[str]:
    """Every JSON number in `text`, as written."""
    tokens: list[str] = []

    def keep(token: str) -> float:
        tokens.append(token)
        return float(token)

    json.loads(text, parse_float=keep, parse_int=keep)
    return tokens


def reference(message: Any) -> dict[str, Any] | type[Exception]:
    try:
        return json_format.MessageToDict(message)
    except (json_format.SerializeToJsonError, ValueError):
        return EncodeError


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def ours(message: Any) -> dict[str, Any] | type[Exception]:
    try:
        text = message_to_json(message)
    except EncodeError:
        return EncodeError
    assert not re.search(r"\s", _STRING.sub("", text)), text  # compact: no space outside strings
    for token in number_tokens(text):
        assert token == go_protojson_number(float(token)), f"{token} is not how Go's protojson writes it"
    return json.loads(text, parse_int=float)  # "-0" is the double -0.0, as a JSON reader in Go or JS reads it


def _as_floats(value: Any) -> Any:
    """Numbers compared by value: protojson's `12` and json_format's `12.0` are the same double."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list):
        return [_as_floats(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_floats(item) for key, item in value.items()}
    return value


def same(left: Any, right: Any) -> bool:
    """Equal by value, numbers as doubles; holds for NaN too (written as the string "NaN", but be safe)."""
    return json.dumps(_as_floats(left), sort_keys=True, default=str) == json.dumps(
        _as_floats(right), sort_keys=True, default=str
    )


@settings(max_examples=400, deadline=None)
@given(any_events())
def test_any_event_renders_exactly_as_message_to_dict(event: pb.Event) -> None:
    expected = reference(event)

    assert same(ours(event), expected)


@settings(max_examples=200, deadline=None)
@given(st.integers(-70_000_000_000, 260_000_000_000), st.integers(-5, 1_000_000_005))
def test_timestamps_render_as_the_library_renders_them(seconds: int, nanos: int) -> None:
    timestamp = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    event = pb.Event(timestamp=timestamp)

    assert same(ours(event), reference(event))


def test_a_struct_with_a_non_finite_number_has_no_json_form() -> None:
    event = pb.Event(id="x")
    event.parameters.private_metadata.fields["n"].number_value = math.inf

    with pytest.raises(EncodeError):
        message_to_dict(event)


def test_other_messages_and_well_known_types_render_too() -> None:
    metadata = pb.RecordEventsRequestMetadata(
        request_id="r", identifier=pb.Identifier(managed_service=pb.Identifier.ManagedServiceIdentifier(service_id="s"))
    )
    struct = struct_pb2.Struct()
    struct.update({"a": [1, "two", {"three": None}]})

    assert message_to_dict(metadata) == json_format.MessageToDict(metadata)
    assert message_to_dict(struct) == json_format.MessageToDict(struct)


def test_dumps_writes_compact_utf8_and_refuses_nan() -> None:
    assert dumps({"a": "é", "b": [1.5, None]}) == '{"a":"é","b":[1.5,null]}'
    with pytest.raises(ValueError):
        dumps({"a": math.nan})


# What Go's protojson writes for these doubles (protobuf-go internal/encoding/json, appendFloat).
GO_NUMBERS = [
    (12.0, "12"),
    (-3.0, "-3"),
    (0.0, "0"),
    (-0.0, "-0"),
    (0.5, "0.5"),
    (0.1, "0.1"),
    (1 / 3, "0.3333333333333333"),
    (123456789.125, "123456789.125"),
    (2.0**53 + 2, "9007199254740994"),
    (1e16, "10000000000000000"),  # Python's repr: 1e+16
    (1e20, "100000000000000000000"),
    (1.2345678901234567e20, "123456789012345670000"),
    (1e21, "1e+21"),  # from here up: exponent form
    (1.5e300, "1.5e+300"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (1e-6, "0.000001"),  # from here down to 1e-6: positional (Python's repr: 1e-06)
    (1.234e-5, "0.00001234"),
    (-1e-5, "-0.00001"),
    (1e-7, "1e-7"),  # below 1e-6: exponent form, a negative exponent's leading zero dropped
    (-1.5e-7, "-1.5e-7"),
    (1e-10, "1e-10"),
    (5e-324, "5e-324"),
]


@pytest.mark.parametrize(("value", "written"), GO_NUMBERS, ids=[repr(v) for v, _ in GO_NUMBERS])
def test_doubles_are_written_as_go_protojson_writes_them(value: float, written: str) -> None:
    event = pb.Event()
    event.parameters.metadata["n"] = value
    event.parameters.private_metadata.fields["n"].number_value = value

    assert go_protojson_number(value) == written  # the test's own rule agrees with the table
    assert message_to_json(event) == (
        '{"parameters":{"privateMetadata":{"n":' + written + '},"metadata":{"n":' + written + "}}}"
    )


def test_non_finite_doubles_are_strings_in_a_double_field() -> None:
    event = pb.Event()
    event.parameters.metadata.update({"a": math.nan, "b": math.inf, "c": -math.inf})

    assert json.loads(message_to_json(event)) == {
        "parameters": {"metadata": {"a": "NaN", "b": "Infinity", "c": "-Infinity"}}
    }


def test_struct_values_render_as_json_format_does_with_go_numbers() -> None:
    struct = struct_pb2.Struct()
    struct.update({"list": [1, 2.5, "x", None, True, {"deep": [3.0]}], "empty": {}, "none": None})
    struct.fields["unset"].SetInParent()  # a Value with no kind: null, as json_format writes it

    text = message_to_json(struct)

    assert json.loads(text) == {
        "list": [1, 2.5, "x", None, True, {"deep": [3]}],
        "empty": {},
        "none": None,
        "unset": None,
    }
    assert '"deep":[3]' in text and '"list":[1,2.5,' in text


def test_map_and_struct_keys_are_written_in_key_order_as_go_writes_them() -> None:
    # Go's protojson ranges over a map (a Struct is one underneath) in GenericKeyOrder: strings by their bytes,
    # so the same event is the same text in every process, whatever order its entries were set in.
    event = pb.Event(id="x")
    for key in ("zeta", "alpha", "Beta", "é", "a"):
        event.parameters.metadata[key] = 1.0
        event.feature_flags.flags[key] = "on"
    event.parameters.private_metadata.update({"z": {"y": 1, "b": 2}, "a": 0})

    written = json.loads(message_to_json(event))  # a dict keeps its keys in the order they were written

    in_go_order = ["Beta", "a", "alpha", "zeta", "é"]  # byte order: upper case first, non-ASCII last
    parameters = written["parameters"]
    assert list(parameters["metadata"]) == in_go_order
    assert list(written["featureFlags"]["flags"]) == in_go_order
    assert list(parameters["privateMetadata"]) == ["a", "z"]
    assert list(parameters["privateMetadata"]["z"]) == ["b", "y"]


def test_whole_numbers_cast_to_an_integer_in_sql_as_the_reference_json_does(postgres_server) -> None:
    # Downstream SQL written for the reference's JSON takes the text of a value and casts it (BigQuery:
    # CAST(JSON_VALUE(data, '$.event.parameters.metadata.resultCount') AS INT64)); Postgres, the same way.
    event = pb.Event()
    event.parameters.metadata["resultCount"] = 12.0
    event.parameters.legacy_metadata["durationMs"] = 1200
    from telemetry_events.published_form import published_event_json

    body = published_event_json(event)
    connection = postgres_server.admin()
    try:
        cursor = connection.cursor()
        cursor.execute(
            "SELECT (%s::json #>> '{parameters,metadata,resultCount}')::bigint,"
            " (%s::json #>> '{parameters,metadata,durationMs}')::bigint",
            (body, body),
        )
        assert cursor.fetchone() == [12, 1200]
        with pytest.raises(Exception, match="invalid input syntax for type bigint"):  # what Python's 12.0 did
            cursor.execute("SELECT %s::bigint", ("12.0",))
    finally:
        connection.close()
