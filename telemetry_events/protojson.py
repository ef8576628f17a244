"""Protobuf messages as canonical protojson text (camelCase names, int64 as strings), fast, with numbers
written as the reference gateway (Go's protojson) writes them.

`google.protobuf.json_format` gives the right answer, but on this machine MessageToDict plus
json.dumps cost about 115 us for a typical 600-byte event: at thousands of events per second
that alone would take most of a CPU. Here, for each message type, a small function is generated
once from its descriptor that reads the fields directly and writes JSON text (string escaping
by the json module's C encoder), about three times faster. The rare cases it does not
specialise (well-known types other than Timestamp and Struct, float32, enums, groups) are
written by json_format, for the message that holds them. Being generated from descriptors, it
follows fields added to the schema without code changes; a property test checks on arbitrary
events that `json.loads(message_to_json(m))` equals `json_format.MessageToDict(m)`.

Numbers: a double is written as Go's protojson writes it (`appendFloat` in protobuf-go's
internal/encoding/json), not as Python's `repr`: the shortest digits that read back exactly,
in positional notation when 1e-6 <= |x| < 1e21 (so a whole number has no fraction: `12`, not
`12.0`, and `1e20` is `100000000000000000000`), otherwise as `d.ddde±XX` with at least two
exponent digits except that a negative exponent loses its leading zero (`1e+21`, `1e-7`,
`5e-324`). The reference's consumers (SQL casting the text of a whole number to INT64, for
one) read this gateway's output unchanged. NaN and infinities are the strings "NaN",
"Infinity" and "-Infinity" in a double field, and have no JSON form inside a Struct.

Map entries and Struct fields are written in key order, as Go's protojson ranges over a map
(GenericKeyOrder): one event has one text in every process, so `preview` on an instance shows
byte for byte what the gateway publishes.
"""

from __future__ import annotations

import base64
import json
import keyword
import time
from collections.abc import Callable
from decimal import Decimal
from json.encoder import encode_basestring  # type: ignore[attr-defined]  # the C implementation when available
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

_INT64_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
_INT32_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_SFIXED32,
    }
)

# One encoder built once: json.dumps with non-default options builds a new one per call.
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_writers: dict[str, Callable[[Any], str]] = {}


class EncodeError(ValueError):
    """A message has no JSON form (for example NaN inside a Struct); the message says where."""


class _Unspecialised(Exception):
    """A field kind left to json_format."""


def message_to_json(message: Message) -> str:
    """Compact protojson text of `message`: `json.loads` of it equals `MessageToDict(message)`."""
    try:
        return _writer(message.DESCRIPTOR)(message)
    except (json_format.SerializeToJsonError, ValueError, TypeError) as error:
        raise EncodeError(str(error)) from None


def message_to_dict(message: Message) -> dict[str, Any]:
    """The same as a dictionary (for the rare caller that needs one)."""
    return json.loads(message_to_json(message))


def dumps(value: Any) -> str:
    """Compact JSON text; UTF-8 kept as is rather than escaped, as protojson writes it."""
    return _encoder.encode(value)


def _writer(descriptor: Descriptor) -> Callable[[Any], str]:
    writer = _writers.get(descriptor.full_name)
    if writer is None:
        writer = _writers[descriptor.full_name] = _generate(descriptor)
    return writer


def _via_json_format(message: Message) -> str:
    return _encoder.encode(json_format.MessageToDict(message))


def _generate(descriptor: Descriptor) -> Callable[[Any], str]:
    """Writes, compiles and returns the JSON writer of one message type."""
    if descriptor.full_name == "google.protobuf.Timestamp":
        return _timestamp_json
    if descriptor.full_name in _STRUCT_WRITERS:
        return _STRUCT_WRITERS[descriptor.full_name]
    if descriptor.full_name.startswith("google.protobuf."):
        return _via_json_format  # well-known types have special JSON forms: json_format knows them
    names: dict[str, Any] = {
        "_str": encode_basestring,
        "_double": go_double,
        "_b64": _b64,
        "_writer": _writer,
        "_float_repr": float.__repr__,
    }
    lines = ["def write(m):", "    p = []"]
    try:
        for field in sorted(descriptor.fields, key=lambda f: f.number):
            lines.extend("    " + line for line in _field_code(field, names))
    except _Unspecialised:
        return _via_json_format
    lines.append('    return "{" + ",".join(p) + "}"')
    source = "\n".join(lines)
    exec(compile(source, f"<protojson {descriptor.full_name}>", "exec"), names)  # noqa: S102 - our own code
    return names["write"]


def _field_code(field: FieldDescriptor, names: dict[str, Any]) -> list[str]:
    """Statements that append `"jsonName":value` to `p` when the field is present."""
    key = repr(encode_basestring(field.json_name) + ":")
    attribute = f"getattr(m, {field.name!r})" if keyword.iskeyword(field.name) else f"m.{field.name}"
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key_field = field.message_type.fields_by_name["key"]
        value_code = _value_code(field.message_type.fields_by_name["value"], "x", names)
        key_code = {
            FieldDescriptor.TYPE_STRING: "_str(k)",
            FieldDescriptor.TYPE_BOOL: '("\\"true\\"" if k else "\\"false\\"")',
        }.get(key_field.type, '"\\"" + str(k) + "\\""')
        return [
            f"v = {attribute}",
            "if v:",
            "    q = []",
            "    for k in sorted(v):",  # Go's protojson writes map entries in key order (GenericKeyOrder)
            "        x = v[k]",
            f"        q.append({key_code} + ':' + {value_code})",
            f"    p.append({key} + '{{' + ','.join(q) + '}}')",
        ]
    if field.is_repeated:
        value_code = _value_code(field, "x", names)
        return [f"v = {attribute}", "if v:", f"    p.append({key} + '[' + ','.join([{value_code} for x in v]) + ']')"]
    value_code = _value_code(field, "v", names)
    if field.has_presence:
        return [f"if m.HasField({field.name!r}):", f"    v = {attribute}", f"    p.append({key} + {value_code})"]
    if field.type in (FieldDescriptor.TYPE_DOUBLE,):
        # Present unless +0.0: -0.0 and NaN are written, as protobuf keeps their bits.
        return [f"v = {attribute}", "if v or _float_repr(v) == '-0.0':", f"    p.append({key} + {value_code})"]
    return [f"v = {attribute}", "if v:", f"    p.append({key} + {value_code})"]


def _value_code(field: FieldDescriptor, variable: str, names: dict[str, Any]) -> str:
    """An expression writing the JSON of one value held in `variable`."""
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return f"_str({variable})"
    if kind == FieldDescriptor.TYPE_BOOL:
        return f'("true" if {variable} else "false")'
    if kind in _INT32_TYPES:
        return f"str({variable})"
    if kind in _INT64_TYPES:
        return f'"\\"" + str({variable}) + "\\""'
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return f"_double({variable})"
    if kind == FieldDescriptor.TYPE_BYTES:
        return f"_b64({variable})"
    if kind == FieldDescriptor.TYPE_MESSAGE:
        writer_name = "_w_" + field.message_type.full_name.replace(".", "_")
        # Resolved on first use, not now: message types may refer to each other, or to themselves.
        names[writer_name] = _LazyWriter(field.message_type, names, writer_name)
        return f"{writer_name}({variable})"
    raise _Unspecialised  # float32, enums, groups


class _LazyWriter:
    """Stands in for a nested type's writer until first called, then puts the real one in its place."""

    def __init__(self, descriptor: Descriptor, names: dict[str, Any], name: str) -> None:
        self._descriptor, self._names, self._name = descriptor, names, name

    def __call__(self, message: Any) -> str:
        write = self._names[self._name] = _writer(self._descriptor)
        return write(message)


def go_double(value: float) -> str:
    """A double as Go's protojson writes it (see the module's docstring); NaN and infinities as strings."""
    text = float.__repr__(value)  # the shortest digits that read back exactly, as Go's strconv finds them
    if value - value != 0:  # NaN or an infinity
        return '"NaN"' if value != value else ('"Infinity"' if value > 0 else '"-Infinity"')
    if text.endswith(".0"):
        return text[:-2]  # a whole number below 1e16: Python's repr is already positional
    if "e" not in text:
        return text
    magnitude = abs(value)
    if 1e-6 <= magnitude < 1e21:
        return format(Decimal(text), "f")  # 1e+16 -> 10000000000000000, 1.5e-05 -> 0.000015
    # Both write at least two exponent digits; Go then drops a negative exponent's leading zero.
    if text[-4:-1] == "e-0":
        return text[:-2] + text[-1]
    return text


def _struct_number(value: float) -> str:
    if value - value != 0:
        raise EncodeError(f"{value} in a Struct has no JSON form (it would read back as a string)")
    return go_double(value)


def _value_json(value: Any) -> str:
    """google.protobuf.Value: its one kind, or null when none is set (as json_format writes it)."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return encode_basestring(value.string_value)
    if kind == "number_value":
        return _struct_number(value.number_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "struct_value":
        return _struct_json(value.struct_value)
    if kind == "list_value":
        return _list_json(value.list_value)
    return "null"


def _struct_json(struct: Any) -> str:
    fields = struct.fields
    # In key order, as Go's protojson writes a Struct (a map underneath): the same event, the same text.
    return "{" + ",".join([encode_basestring(key) + ":" + _value_json(fields[key]) for key in sorted(fields)]) + "}"


def _list_json(values: Any) -> str:
    return "[" + ",".join([_value_json(item) for item in values.values]) + "]"


_STRUCT_WRITERS: dict[str, Callable[[Any], str]] = {
    "google.protobuf.Struct": _struct_json,
    "google.protobuf.Value": _value_json,
    "google.protobuf.ListValue": _list_json,
}


def _b64(raw: bytes) -> str:
    return '"' + base64.b64encode(raw).decode("ascii") + '"'


# Seconds of 10000-01-01T00:00:00Z: protojson's upper bound for a Timestamp.
_MAX_SECONDS = 253402300800
# The last second rendered: the events of one batch mostly share their second, and strftime is
# a good part of a timestamp's cost.
_last_second: tuple[int, str] = (-1, "")


def _timestamp_json(value: Any) -> str:
    """RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits, as Timestamp.ToJsonString writes it."""
    seconds, nanos = value.seconds, value.nanos
    if not (0 <= seconds < _MAX_SECONDS and 0 <= nanos < 1_000_000_000):
        # Before 1970 or out of range: the library's rules (and its errors) for the rare case.
        return _via_json_format(value)
    global _last_second
    cached = _last_second  # one read: threads may replace it meanwhile, never half of it
    if cached[0] == seconds:
        text = cached[1]
    else:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _last_second = (seconds, text)
    if nanos == 0:
        return f'"{text}Z"'
    if nanos % 1_000_000 == 0:
        return f'"{text}.{nanos // 1_000_000:03d}Z"'
    if nanos % 1000 == 0:
        return f'"{text}.{nanos // 1000:06d}Z"'
    return f'"{text}.{nanos:09d}Z"'
