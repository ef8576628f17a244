"""Request decoding: requests through wire-compatible views that leave each event as bytes, then each
event on its own. A malformed request is INVALID_ARGUMENT, whatever bytes arrive; a malformed event
is refused alone, with a reason that names its problem."""

from __future__ import annotations

import grpc
import pytest
from gateway_testing import events_request, licensed_metadata, make_event
from google.protobuf import struct_pb2
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_run.decoding import (
    UndecodableEvent,
    decode_event,
    decode_event_request,
    decode_events_request,
    events_request_bytes,
)
from gateway_run.errors import RequestRejected
from telemetry_events import pb
from tests.event_strategies import any_events

VALID_REQUESTS = [licensed_metadata("tgk1.claims.signature"), events_request([make_event(1), make_event(2)])]
VALID = [request.SerializeToString() for request in VALID_REQUESTS]


def length_delimited(number: int, payload: bytes) -> bytes:
    """One protobuf field of wire type 2 (bytes or a message), written by hand."""
    size, varint = len(payload), b""
    while True:
        varint += bytes([(size & 0x7F) | (0x80 if size > 0x7F else 0)])
        size >>= 7
        if not size:
            return bytes([number << 3 | 2]) + varint + payload


def nested_event(lists: int, leaf: bytes = struct_pb2.Value(string_value="leaf").SerializeToString()) -> bytes:
    """An event with private_metadata {"deep": [[...`lists` lists deep...[leaf]]]}: no client library builds it.

    Message levels: Event, EventParameters, Struct, its map entry, Value, then a ListValue and a
    Value per list: 5 + 2 x `lists`, plus whatever `leaf` nests.
    """
    value = leaf
    for _ in range(lists):
        value = length_delimited(6, length_delimited(1, value))  # Value.list_value { values: value }
    struct = length_delimited(1, length_delimited(1, b"deep") + length_delimited(2, value))
    return length_delimited(1, b"0190f3c2-7a41-7c3e-9d2a-5b8e4f1a2c3d") + length_delimited(
        6, length_delimited(3, struct)
    )  # id, then parameters.private_metadata


# --- Requests ------------------------------------------------------------------------------------------------------


def view_or_rejected(raw: bytes, decode) -> object | None:
    try:
        return decode(raw)
    except RequestRejected as rejected:
        assert rejected.code == grpc.StatusCode.INVALID_ARGUMENT
        assert rejected.message.startswith("request is not a valid RecordEvent")
        return None


def real_or_none(raw: bytes, message_type: type) -> object | None:
    try:
        return message_type.FromString(raw)
    except DecodeError:
        return None


def assert_view_agrees_with_the_real_message(raw: bytes) -> None:
    """Whatever the real RecordEventsRequest decodes, its view decodes to the same; events compared one by one."""
    real, view = real_or_none(raw, pb.RecordEventsRequest), view_or_rejected(raw, decode_events_request)
    if real is None:
        return  # the view may accept more: an event protobuf refuses is refused later, on its own
    assert view is not None, "the view refused bytes that are a valid RecordEventsRequest"
    assert view.WhichOneof("payload") == real.WhichOneof("payload")
    assert view.metadata == real.metadata
    assert [pb.Event.FromString(raw_event) for raw_event in view.events.events] == list(real.events.events)


def assert_unary_view_agrees(raw: bytes) -> None:
    real, view = real_or_none(raw, pb.RecordEventRequest), view_or_rejected(raw, decode_event_request)
    if real is None:
        return
    assert view is not None
    assert view.metadata == real.metadata
    assert view.HasField("event") == real.HasField("event")
    assert pb.Event.FromString(view.event) == real.event


texts = st.text(max_size=12)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        request = licensed_metadata(draw(texts), instance_id=draw(texts), request_id=draw(texts) or "r")
    else:
        request = events_request(draw(st.lists(any_events(nan=False), max_size=4)))
    return request.SerializeToString()


@settings(max_examples=300, deadline=None)
@given(requests(), st.data())
def test_the_request_view_decodes_every_real_request_to_the_same_events(raw: bytes, data: st.DataObject) -> None:
    assert_view_agrees_with_the_real_message(raw)
    if raw:
        corrupted = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 4))):
            corrupted[data.draw(st.integers(0, len(corrupted) - 1))] = data.draw(st.integers(0, 255))
        assert_view_agrees_with_the_real_message(bytes(corrupted))
        assert_view_agrees_with_the_real_message(raw[: data.draw(st.integers(0, len(raw)))])
    # Two messages concatenated merge, for the view as for the real message (last oneof member wins).
    assert_view_agrees_with_the_real_message(raw + data.draw(requests()))


@settings(max_examples=100, deadline=None)
@given(st.lists(any_events(nan=False), max_size=1), st.booleans())
def test_the_unary_view_decodes_every_real_request_to_the_same_event(event: list[pb.Event], metadata: bool) -> None:
    request = pb.RecordEventRequest(event=event[0] if event else None)
    if metadata:
        request.metadata.CopyFrom(licensed_metadata("k").metadata)
    assert_unary_view_agrees(request.SerializeToString())


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_are_a_view_or_refused_as_invalid_argument(raw: bytes) -> None:
    assert_view_agrees_with_the_real_message(raw)
    assert_unary_view_agrees(raw)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VALID), st.data())
def test_valid_requests_with_corrupted_bytes(raw: bytes, data: st.DataObject) -> None:
    corrupted = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(corrupted) - 1))
        corrupted[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(corrupted)))

    assert_view_agrees_with_the_real_message(bytes(corrupted))
    assert_view_agrees_with_the_real_message(bytes(corrupted[:cut]))


def test_a_request_view_is_refused_with_the_request_name_and_the_parser_reason() -> None:
    with pytest.raises(RequestRejected) as rejected:
        decode_events_request(b"\xff\xff\xff\xff not protobuf")

    assert rejected.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        rejected.value.message
        == "request is not a valid RecordEventsRequest: not valid protobuf (truncated or corrupt)"
    )


def test_invalid_utf8_in_the_metadata_refuses_the_whole_request() -> None:
    raw = b"\x0a\x04\x0a\x02\xff\xfe"  # metadata { request_id: <invalid UTF-8> }

    with pytest.raises(RequestRejected) as rejected:
        decode_events_request(raw)
    assert "not valid UTF-8" in rejected.value.message


def test_events_request_bytes_is_a_real_request() -> None:
    events = [make_event(1), make_event(2)]

    raw = events_request_bytes([event.SerializeToString() for event in events])

    assert pb.RecordEventsRequest.FromString(raw) == events_request(events)


# --- Events, one by one ----------------------------------------------------------------------------------------------


def test_an_event_nested_past_the_parser_limit_fails_alone_with_a_reason_that_names_it() -> None:
    # 5 + 2 x 48 = 101 message levels decode (a bare Event, as the exporter parses it); one more does not.
    at_the_limit = nested_event(48)
    one_deeper = nested_event(48, leaf=length_delimited(5, b""))  # the leaf Value holds an empty Struct
    request = events_request_bytes([make_event(1).SerializeToString(), one_deeper, at_the_limit])

    raw_events = decode_events_request(request).events.events

    assert len(raw_events) == 3
    assert decode_event(raw_events[0]).feature == "search.results"
    assert decode_event(raw_events[2]).id == "0190f3c2-7a41-7c3e-9d2a-5b8e4f1a2c3d"
    with pytest.raises(UndecodableEvent) as undecodable:
        decode_event(raw_events[1])
    assert undecodable.value.reason == "nested more than 100 levels deep (protobuf decodes no deeper)"
    assert undecodable.value.head.id == "0190f3c2-7a41-7c3e-9d2a-5b8e4f1a2c3d"  # acknowledged by it


def test_an_event_with_invalid_utf8_is_refused_with_what_identifies_it() -> None:
    raw = (
        length_delimited(1, b"0190F3C2-7A41-7C3E-9D2A-5B8E4F1A2C3D")
        + length_delimited(3, b"search")
        + length_delimited(4, b"vi\xffewed")
    )

    with pytest.raises(UndecodableEvent) as undecodable:
        decode_event(raw)

    assert undecodable.value.reason == "a string field is not valid UTF-8"
    head = undecodable.value.head
    assert (head.id, head.feature, head.action) == ("0190F3C2-7A41-7C3E-9D2A-5B8E4F1A2C3D", "search", "vi\ufffdewed")


@pytest.mark.parametrize(
    "raw",
    [
        b"\x0f\xff\x00 garbage",  # wire type 7 does not exist
        length_delimited(1, b"abc")[:-1],  # cut short
        b"\x08" + b"\xff" * 11,  # a varint of 11 bytes
    ],
)
def test_corrupt_bytes_are_refused_and_nothing_is_read_from_them(raw: bytes) -> None:
    with pytest.raises(UndecodableEvent) as undecodable:
        decode_event(raw)

    assert undecodable.value.reason == "not valid protobuf (truncated or corrupt)"
    assert undecodable.value.head.id == ""


def test_an_id_that_is_not_utf8_is_never_read_back_as_one() -> None:
    raw = length_delimited(1, b"\xff\xfe") + b"\x0f"

    with pytest.raises(UndecodableEvent) as undecodable:
        decode_event(raw)
    assert undecodable.value.head.id == ""
