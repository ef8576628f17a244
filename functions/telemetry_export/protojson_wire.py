"""Plain protojson lines straight to wire bytes, by the C extension `_protojson_wire`.

The extension reads a line in one pass and writes the wire bytes `Message.FromString` reads
into the message json_format.Parse gives; here its table of message types is built from the
descriptors, once. It takes only the plain forms protojson_reader's fast path takes and gives
up on everything else (None here): the caller then reads the line the Python way, with its
answers and its error words. Where the extension is not compiled, every line is given up.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from telemetry_events.nesting import MAX_PRIVATE_METADATA_DEPTH

try:
    from telemetry_export import _protojson_wire
except ImportError:  # not compiled on this machine (an optional extension, see pyproject.toml)
    _protojson_wire = None

# The extension's field kinds (its enum, in the same order).
GIVE_UP, STRING, BOOL, DOUBLE, INT32, INT64, UINT32, UINT64, MESSAGE, TIMESTAMP, STRUCT, MAP = range(12)
# A message's fields are tracked in one 64-bit word, to give up on a field given twice.
_MAX_FIELDS = 64

_SCALARS = {
    FieldDescriptor.TYPE_STRING: STRING,
    FieldDescriptor.TYPE_BOOL: BOOL,
    FieldDescriptor.TYPE_DOUBLE: DOUBLE,
    FieldDescriptor.TYPE_INT32: INT32,
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_UINT32: UINT32,
    FieldDescriptor.TYPE_UINT64: UINT64,
}  # other kinds (enums, bytes, float, zigzag and fixed-width integers) are given up


def wire_bytes(line: bytes, descriptor: Descriptor) -> bytes | None:
    """The wire bytes of the message `line` holds in a plain form, or None for the Python path to read it."""
    if _protojson_wire is None:
        return None
    schema, index = _schema(descriptor)
    data = _protojson_wire.wire_bytes(schema, line, index, MAX_PRIVATE_METADATA_DEPTH)
    return None if data is NotImplemented else data


@cache
def _schema(descriptor: Descriptor) -> tuple[Any, int]:
    """The extension's table of `descriptor` and every type it holds, and the index of `descriptor` in it."""
    types: list[list[tuple[str, int, int, int, int, int]]] = []
    indexes: dict[str, int] = {}

    def index_of(message: Descriptor) -> int:
        if message.full_name not in indexes:
            indexes[message.full_name] = len(types)
            types.append([])
            types[indexes[message.full_name]] = fields_of(message)
        return indexes[message.full_name]

    def fields_of(message: Descriptor) -> list[tuple[str, int, int, int, int, int]]:
        fields = []
        for position, field in enumerate(message.fields):
            kind, value_kind, nested = _kind(field, index_of)
            if position >= _MAX_FIELDS:
                kind = GIVE_UP
            for name in dict.fromkeys((field.json_name, field.name)):
                fields.append((name, min(position, _MAX_FIELDS - 1), field.number, kind, value_kind, nested))
        return fields

    top = index_of(descriptor)
    return _protojson_wire.schema(types), top


def _kind(field: FieldDescriptor, index_of) -> tuple[int, int, int]:
    """(kind, a map's value kind, the message type's index) of one field."""
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        key, value = message.fields_by_name["key"], message.fields_by_name["value"]
        if key.type != FieldDescriptor.TYPE_STRING:
            return GIVE_UP, GIVE_UP, 0
        value_kind, _, nested = _kind(value, index_of)
        return (MAP, value_kind, nested) if value_kind != GIVE_UP else (GIVE_UP, GIVE_UP, 0)
    if field.is_repeated:
        return GIVE_UP, GIVE_UP, 0  # none in the event schema outside maps and Struct
    if message is not None:
        if message.full_name == "google.protobuf.Timestamp":
            return TIMESTAMP, GIVE_UP, 0
        if message.full_name == "google.protobuf.Struct":
            return STRUCT, GIVE_UP, 0
        if message.full_name.startswith("google.protobuf."):
            return GIVE_UP, GIVE_UP, 0
        return MESSAGE, GIVE_UP, index_of(message)
    return _SCALARS.get(field.type, GIVE_UP), GIVE_UP, 0
