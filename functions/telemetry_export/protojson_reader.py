"""Protojson text to a message's constructor arguments, fast; `json_format` for everything unusual.

`json_format.Parse` costs about 170 us for a typical 1 KB event on this machine, several times
everything else recording does with it. Here each line is read by orjson (by the json module's
C scanner when orjson refuses it or a key may be repeated), then converted by small readers
built once per message type from its descriptor into the arguments of the message's
constructor: `pb.Event(**arguments)` is the event `json_format.Parse` would give. The readers
take only the plain forms: canonical field names or the original ones, strings for strings,
JSON numbers (or canonical integer strings for 64-bit integers), booleans, objects, and
RFC 3339 timestamps in UTC. Anything else (a null, a number given as a string, a timestamp
with an offset, an unknown or repeated field, a type mismatch) makes the reader give up,
and the line is parsed by `json_format.Parse` instead: its result, or its ParseError. So the
fast path never decides an edge case differently; a property test holds it to that.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from telemetry_events.nesting import MAX_PRIVATE_METADATA_DEPTH, NestedTooDeep

ParseError = json_format.ParseError


class NotAnObject(ValueError):
    """The JSON text holds a value that is not an object, so no message."""

    def __init__(self, value: Any) -> None:
        super().__init__(f"expected a JSON object, got {type(value).__name__}")
        self.kind = type(value).__name__


class _GiveUp(Exception):
    """Not a plain form: json_format decides."""


class _DuplicateKey(Exception):
    pass


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise _DuplicateKey
    return document


# The exact reading, for a line orjson refuses or that may repeat a key: the json module's C
# scanner, as json_format.Parse uses it, with each object's pairs checked for a repeated key.
_exact_decoder = json.JSONDecoder(object_pairs_hook=_object_without_duplicates)
_ESCAPED_COLON = re.compile(r"\\u003[aA]")
_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,19})")
_TIMESTAMP = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_UINT32 = (0, 2**32 - 1)
_UINT64 = (0, 2**64 - 1)

Reader = Callable[[Any], Any]
_readers: dict[str, Reader] = {}


def parse_arguments(text: str, descriptor: Descriptor) -> dict[str, Any] | None:
    """The constructor arguments of the message `text` holds, or None when it takes json_format to say.

    Raises:
        ValueError (json.JSONDecodeError): `text` is not JSON.
        RecursionError: `text` nests too deeply for the JSON scanner.
        NotAnObject: the JSON value is not an object.
        NestedTooDeep: a Struct nests deeper than the gateway can decode.
    """
    document = _decode(text)
    if document is None:
        return None
    if type(document) is not dict:
        raise NotAnObject(document)
    try:
        return _message_reader(descriptor)(document)
    except _GiveUp:
        return None


def _decode(text: str) -> Any:
    """The JSON value of `text`, read by orjson when it can; None when a key is repeated.

    orjson is several times faster than the json module, but keeps the last of a repeated key
    where json_format refuses the line. Every key is followed by one colon outside strings, so
    a line that repeats none has as many colons as the compact JSON of what was read (unless a
    string spells a colon as an escape, which is then read exactly).
    """
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        pass  # NaN, a lone surrogate, not JSON at all...: read exactly, for json_format's answer and words
    else:
        if text.count(":") == orjson.dumps(document).count(b":") and not _ESCAPED_COLON.search(text):
            return document
    try:
        return _exact_decoder.decode(text)
    except _DuplicateKey:
        return None


def parse(text: str, message_class: type[Message]) -> Message:
    """`text` as a message: the same message, or the same ParseError, as `json_format.Parse`."""
    try:
        arguments = parse_arguments(text, message_class.DESCRIPTOR)
    except (ValueError, RecursionError):
        arguments = None  # json_format words the error (NotAnObject and NestedTooDeep are ValueErrors too)
    if arguments is None:
        return json_format.Parse(text, message_class())
    return message_class(**arguments)


def _message_reader(descriptor: Descriptor) -> Reader:
    reader = _readers.get(descriptor.full_name)
    if reader is None:
        _readers[descriptor.full_name] = _LazyReader(descriptor)  # while it is built, for a type inside itself
        reader = _readers[descriptor.full_name] = _build_message_reader(descriptor)
    return reader


def _build_message_reader(descriptor: Descriptor) -> Reader:
    if descriptor.full_name == "google.protobuf.Timestamp":
        return _read_timestamp
    if descriptor.full_name == "google.protobuf.Struct":
        return _read_struct
    if descriptor.full_name.startswith("google.protobuf."):
        return _give_up
    fields: dict[str, tuple[str, Reader | None]] = {}
    for field in descriptor.fields:
        try:
            read_value = _field_reader(field)
        except _Unsupported:
            read_value = _give_up
        # Strings, the most common field, are checked inline rather than through a call.
        entry = (field.name, None if read_value is _read_string else read_value)
        fields[field.json_name] = fields[field.name] = entry

    def read(document: Any) -> dict[str, Any]:
        if type(document) is not dict:
            raise _GiveUp
        arguments: dict[str, Any] = {}
        for key, value in document.items():
            entry = fields.get(key)
            if entry is None or value is None:
                raise _GiveUp  # unknown field, or null (json_format's rules for it)
            name, read_value = entry
            if read_value is None:
                if type(value) is not str:
                    raise _GiveUp
                arguments[name] = value
            else:
                arguments[name] = read_value(value)
        if len(arguments) != len(document):
            raise _GiveUp  # a field under both of its names
        return arguments

    return read


class _Unsupported(Exception):
    """A field kind the fast path does not read (enums, bytes, float, other well-known types)."""


def _give_up(value: Any) -> Any:
    raise _GiveUp


def _field_reader(field: FieldDescriptor) -> Reader:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key_field = field.message_type.fields_by_name["key"]
        if key_field.type != FieldDescriptor.TYPE_STRING:
            raise _Unsupported
        return _map_reader(_scalar_reader(field.message_type.fields_by_name["value"]))
    if field.is_repeated:
        raise _Unsupported  # none in the event schema outside maps and Struct
    return _scalar_reader(field)


def _map_reader(read_value: Reader) -> Reader:
    def read(document: Any) -> dict[str, Any]:
        if type(document) is not dict:
            raise _GiveUp
        entries = {}
        for key, value in document.items():
            if value is None:
                raise _GiveUp
            entries[key] = read_value(value)
        return entries

    return read


def _scalar_reader(field: FieldDescriptor) -> Reader:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return _read_string
    if kind == FieldDescriptor.TYPE_BOOL:
        return _read_bool
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return _read_double
    if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return _integer_reader(*_INT32, strings=False)
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return _integer_reader(*_UINT32, strings=False)
    if kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return _integer_reader(*_INT64, strings=True)
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return _integer_reader(*_UINT64, strings=True)
    if kind == FieldDescriptor.TYPE_MESSAGE:
        message_type = field.message_type
        if message_type.full_name.startswith("google.protobuf.") and message_type.full_name not in (
            "google.protobuf.Timestamp",
            "google.protobuf.Struct",
        ):
            raise _Unsupported
        return _message_reader(message_type)  # built now, once: a direct call on every line
    raise _Unsupported  # enums, bytes, float, groups


class _LazyReader:
    """A nested type's reader until it is built: message types may refer to each other, or to themselves."""

    __slots__ = ("_descriptor",)

    def __init__(self, descriptor: Descriptor) -> None:
        self._descriptor = descriptor

    def __call__(self, document: Any) -> Any:
        return _message_reader(self._descriptor)(document)


def _read_string(value: Any) -> str:
    if type(value) is not str:
        raise _GiveUp
    return value


def _read_bool(value: Any) -> bool:
    if value is not True and value is not False:
        raise _GiveUp
    return value


def _read_double(value: Any) -> float:
    kind = type(value)
    if kind is float:
        if value - value != 0:
            raise _GiveUp  # an infinity or NaN from a non-standard literal
        return value
    if kind is int:
        # Correctly rounded, as json_format converts it: protojson writes a whole double without a
        # fraction (`9007199254740994`, as the reference's Go protojson does).
        try:
            return float(value)
        except OverflowError:
            raise _GiveUp from None
    raise _GiveUp


def _integer_reader(low: int, high: int, strings: bool) -> Reader:
    def read(value: Any) -> int:
        kind = type(value)
        if kind is str and strings and _INT.fullmatch(value):
            value = int(value)
        elif kind is not int:
            raise _GiveUp
        if not low <= value <= high:
            raise _GiveUp
        return value

    return read


def _read_timestamp(value: Any) -> dict[str, int]:
    if type(value) is not str:
        raise _GiveUp
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        raise _GiveUp
    fraction = match.group(7)
    return {"seconds": _seconds(value[:19]), "nanos": int(fraction.ljust(9, "0")) if fraction else 0}


@lru_cache(maxsize=1024)
def _seconds(moment: str) -> int:
    """Seconds since the epoch of "YYYY-MM-DDTHH:MM:SS" in UTC; a file's events mostly share a few."""
    try:
        parsed = datetime(
            int(moment[0:4]), int(moment[5:7]), int(moment[8:10]), int(moment[11:13]), int(moment[14:16]),
            int(moment[17:19]), tzinfo=UTC,
        )  # fmt: skip
    except ValueError:
        raise _GiveUp from None  # not cached: lru_cache keeps only what returns
    delta = parsed - _EPOCH
    return delta.days * 86_400 + delta.seconds


def _read_struct(value: Any) -> dict[str, Any]:
    if type(value) is not dict:
        raise _GiveUp
    return _struct(value, MAX_PRIVATE_METADATA_DEPTH)


def _struct(document: dict[str, Any], budget: int) -> dict[str, Any]:
    """A JSON object as the plain dict a Struct is built from, no deeper than `budget` message levels."""
    if budget < 1:
        raise NestedTooDeep
    return {key: _struct_value(value, budget - 2) for key, value in document.items()}  # an entry, then its Value


def _struct_value(value: Any, budget: int) -> Any:
    if budget < 1:
        raise NestedTooDeep
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is float or kind is int:
        return _read_double(value)  # a Value's number is a double
    if kind is dict:
        return _struct(value, budget - 1)
    if kind is list:
        if budget < 2:
            raise NestedTooDeep
        return [_struct_value(item, budget - 2) for item in value]
    raise _GiveUp
