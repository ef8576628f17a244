"""Request decoding never fails any other way than INVALID_ARGUMENT, whatever bytes arrive."""

from __future__ import annotations

import grpc
import pytest
from gateway_testing import events_request, licensed_metadata, make_event
from google.protobuf import struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_run.decoding import decode
from gateway_run.errors import RequestRejected
from telemetry_events import pb

VALID_REQUESTS = [licensed_metadata("tgk1.claims.signature"), events_request([make_event(1), make_event(2)])]
VALID = [request.SerializeToString() for request in VALID_REQUESTS]


def decodes_or_is_rejected(raw: bytes, message_type: type) -> None:
    try:
        decoded = decode(raw, message_type)
    except RequestRejected as rejected:
        assert rejected.code == grpc.StatusCode.INVALID_ARGUMENT
        assert rejected.message.startswith(f"request is not a valid {message_type.__name__}")
    else:
        assert isinstance(decoded, message_type)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes(raw: bytes) -> None:
    decodes_or_is_rejected(raw, pb.RecordEventsRequest)
    decodes_or_is_rejected(raw, pb.RecordEventRequest)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(VALID), st.data())
def test_valid_requests_with_corrupted_bytes(raw: bytes, data: st.DataObject) -> None:
    corrupted = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(corrupted) - 1))
        corrupted[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(corrupted)))

    decodes_or_is_rejected(bytes(corrupted), pb.RecordEventsRequest)
    decodes_or_is_rejected(bytes(corrupted[:cut]), pb.RecordEventsRequest)


def test_valid_requests_decode_to_what_was_sent() -> None:
    for request, raw in zip(VALID_REQUESTS, VALID, strict=True):
        assert decode(raw, pb.RecordEventsRequest) == request


def length_delimited(number: int, payload: bytes) -> bytes:
    """One protobuf field of wire type 2 (bytes or a message), written by hand."""
    size, varint = len(payload), b""
    while True:
        varint += bytes([(size & 0x7F) | (0x80 if size > 0x7F else 0)])
        size >>= 7
        if not size:
            return bytes([number << 3 | 2]) + varint + payload


def test_nesting_deeper_than_the_parser_allows_is_rejected() -> None:
    # private_metadata {"deep": [[[...200 lists deep...["leaf"]]]]}: no client library would build it.
    value = struct_pb2.Value(string_value="leaf").SerializeToString()
    for _ in range(200):
        value = length_delimited(6, length_delimited(1, value))  # Value.list_value { values: value }
    struct = length_delimited(1, length_delimited(1, b"deep") + length_delimited(2, value))
    event = length_delimited(6, length_delimited(3, struct))  # Event.parameters.private_metadata
    raw = length_delimited(2, length_delimited(1, event))  # RecordEventsRequest.events.events

    with pytest.raises(RequestRejected) as rejected:
        decode(raw, pb.RecordEventsRequest)
    assert rejected.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_invalid_utf8_in_a_string_field_is_rejected() -> None:
    raw = b"\x12\x06\x0a\x04\x0a\x02\xff\xfe"  # events { events { id: <invalid UTF-8> } }

    with pytest.raises(RequestRejected):
        decode(raw, pb.RecordEventsRequest)
