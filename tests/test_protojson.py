"""The gateway's JSON rendering is exactly json_format.MessageToDict's, on any event whatsoever."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_events import pb
from telemetry_events.protojson import EncodeError, dumps, message_to_dict, message_to_json

texts = st.text(max_size=20)
int64s = st.integers(-(2**63), 2**63 - 1)
doubles = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1e300, 5e-324, 2.0**53 + 1])
json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=10,
)


@st.composite
def events(draw: st.DrawFn) -> pb.Event:
    event = pb.Event(id=draw(texts), feature=draw(texts), action=draw(texts))
    if draw(st.booleans()):
        # Including values outside protojson's range (years 1 to 9999), which both must refuse.
        event.timestamp.seconds = draw(st.integers(-70_000_000_000, 260_000_000_000))
        event.timestamp.nanos = draw(st.integers(0, 999_999_999) | st.sampled_from([0, 1_000_000, 123_000]))
    if draw(st.booleans()):
        event.source.server.version = draw(texts)
        if draw(st.booleans()):
            event.source.client.name = draw(texts)
            if draw(st.booleans()):
                event.source.client.version = draw(texts)
    parameters = event.parameters
    parameters.version = draw(st.integers(-(2**31), 2**31 - 1))
    parameters.legacy_metadata.update(draw(st.dictionaries(texts, int64s, max_size=4)))
    parameters.metadata.update(draw(st.dictionaries(texts, doubles, max_size=4)))
    if draw(st.booleans()):
        parameters.private_metadata.update(draw(st.dictionaries(texts, json_values, max_size=4)))
    if draw(st.booleans()):
        parameters.private_metadata.fields["nonfinite"].number_value = draw(st.sampled_from([math.inf, math.nan]))
    if draw(st.booleans()):
        parameters.billing_metadata.product = draw(texts)
        parameters.billing_metadata.category = draw(texts)
    if draw(st.booleans()):
        event.user.SetInParent()
        if draw(st.booleans()):
            event.user.user_id = draw(int64s)
        if draw(st.booleans()):
            event.user.anonymous_user_id = draw(texts)
        if draw(st.booleans()):
            event.user.sams_external_id = draw(texts)
    if draw(st.booleans()):
        event.feature_flags.flags.update(draw(st.dictionaries(texts, texts, max_size=4)))
        event.feature_flags.SetInParent()
    if draw(st.booleans()):
        event.marketing_tracking.SetInParent()
        for name in ("url", "first_source_url", "cohort_id", "referrer", "session_referrer"):
            if draw(st.booleans()):
                setattr(event.marketing_tracking, name, draw(texts))
    if draw(st.booleans()):
        event.interaction.SetInParent()
        if draw(st.booleans()):
            event.interaction.trace_id = draw(texts)
        if draw(st.booleans()):
            event.interaction.geolocation.country_code = draw(texts)
    return event


def reference(message: Any) -> dict[str, Any] | type[Exception]:
    try:
        return json_format.MessageToDict(message)
    except (json_format.SerializeToJsonError, ValueError):
        return EncodeError


def ours(message: Any) -> dict[str, Any] | type[Exception]:
    try:
        text = message_to_json(message)
    except EncodeError:
        return EncodeError
    assert text == json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))  # compact, valid
    return json.loads(text)


def same(left: Any, right: Any) -> bool:
    """Equality that holds for NaN too (protojson writes it as the string "NaN", but be safe)."""
    return json.dumps(left, sort_keys=True, default=str) == json.dumps(right, sort_keys=True, default=str)


@settings(max_examples=400, deadline=None)
@given(events())
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
