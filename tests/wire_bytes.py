"""Hand-built Protobuf wire bytes for tests that send what no generated message would: unknown fields,
known fields with the wrong wire type, nesting past the decoder's limit."""

from __future__ import annotations

from google.protobuf.internal import encoder

VARINT, FIXED64, LEN, START_GROUP, END_GROUP = 0, 1, 2, 3, 4


def varint(value: int) -> bytes:
    return encoder._VarintBytes(value)


def tag(number: int, wire_type: int) -> bytes:
    return encoder.TagBytes(number, wire_type)


def delimited(number: int, payload: bytes) -> bytes:
    """A length-delimited field: a string, bytes, or an embedded message."""
    return tag(number, LEN) + varint(len(payload)) + payload


def group(number: int, body: bytes) -> bytes:
    """A field encoded as a group (start and end tags around its body)."""
    return tag(number, START_GROUP) + body + tag(number, END_GROUP)


def fixed64(number: int, raw: bytes) -> bytes:
    return tag(number, FIXED64) + raw
