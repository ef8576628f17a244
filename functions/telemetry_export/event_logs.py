"""The best-effort translation of a telemetry event into an `event_logs` row, for local analytics.

It sees the event before redaction: everything here stays on the instance. An event arrives
either as an `Event` (the Python API) or as the constructor arguments of one (a JSONL file,
see telemetry_export.protojson_reader); both give the same row, column for column, and each
reads only the fields the row needs: on the recording hot path every read of a protobuf field
costs a crossing into C. The row leaves as one line of COPY text.

An Event's line is read from its wire bytes by a small C extension where it was compiled
(`_event_log_wire`, about a quarter of the Python translation's cost), and by the Python
translation otherwise, or where the extension gives up on bytes it does not expect: the two
give the same row (tests/test_event_log_wire.py).

Rules of the row: name `feature.action`; `public_argument` the numeric metadata (legacy and
current) plus the `telemetry.exportable` marker; `argument` the private metadata; source
`BACKEND` unless a client names itself; anonymous user `unknown` when there is none. Postgres
text and jsonb hold no NUL, and jsonb no NaN or infinity: NUL becomes U+FFFD and a non-finite
number null, in this copy only.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

import orjson
from google.protobuf import struct_pb2

from telemetry_events import pb
from telemetry_events.nesting import MAX_PRIVATE_METADATA_DEPTH, NestedTooDeep
from telemetry_export.store.recording import event_log_line

try:
    from telemetry_export import _event_log_wire
except ImportError:  # not compiled on this machine (an optional extension, see pyproject.toml)
    _event_log_wire = None

BACKEND_SOURCE = "BACKEND"
UNKNOWN_ANONYMOUS_USER = "unknown"
# Marks in public_argument whether the event was queued for export.
EXPORTABLE_MARKER = "telemetry.exportable"

_NUL = "\x00"
_ESCAPED_NUL = b"\\u0000"
_REPLACEMENT = "\ufffd"


def log_line(event: pb.Event, event_id: str, timestamp: str, exportable: bool, serialized: bytes | None = None) -> str:
    """The event_logs COPY line of an Event (`event_id` canonical, `timestamp` as postgres_timestamp gives it).

    `serialized`: the event's wire bytes, when the caller has them (its ID and timestamp are not read).

    Raises:
        NestedTooDeep: private metadata nests deeper than the gateway could decode.
    """
    if _event_log_wire is not None:
        if serialized is None and _shallow(event.parameters):
            serialized = event.SerializeToString()
        if serialized is not None:
            line = _event_log_wire.log_line(serialized, event_id, timestamp, exportable, MAX_PRIVATE_METADATA_DEPTH)
            if line is None:
                raise NestedTooDeep
            if line is not NotImplemented:
                return line
    return translated_line(event, event_id, timestamp, exportable)


def _shallow(parameters: pb.EventParameters) -> bool:
    """Whether no value of the private metadata nests, so that the Event is safe to serialize.

    Protobuf serializes by recursion, as deep as 65,535 levels: private metadata built some
    ten thousand levels deep overflows the stack and kills the process. The Python translation
    stops at the nesting rule's depth; nested private metadata is left to it.
    """
    if not parameters.HasField("private_metadata"):
        return True
    fields = parameters.private_metadata.fields
    for key in fields:
        value = fields[key]
        if value.HasField("struct_value") or value.HasField("list_value"):
            return False
    return True


def translated_line(event: pb.Event, event_id: str, timestamp: str, exportable: bool) -> str:
    """log_line in Python, field by field.

    Raises:
        NestedTooDeep: private metadata nests deeper than the gateway could decode.
    """
    parameters = event.parameters
    public = {}
    legacy = parameters.legacy_metadata
    if legacy:
        for key in legacy:
            public[key] = float(legacy[key])
    metadata = parameters.metadata
    if metadata:
        # Maps are read key by key: dict(map) goes through a Python keys() view, about twice the cost.
        public.update({key: metadata[key] for key in metadata})
    public[EXPORTABLE_MARKER] = exportable
    argument = (
        _dumps(_struct(parameters.private_metadata, MAX_PRIVATE_METADATA_DEPTH))
        if parameters.HasField("private_metadata")
        else None
    )
    if event.HasField("feature_flags"):
        flag_map = event.feature_flags.flags
        flags = _dumps({key: flag_map[key] for key in flag_map})
    else:
        flags = None
    user = event.user
    source = event.source
    if source.HasField("client"):
        client = source.client
        client_name = client.name
        client_label = f"{client_name} {client.version}" if client.HasField("version") else client_name
    else:
        client_name, client_label = "", None
    if event.HasField("marketing_tracking"):
        tracking = event.marketing_tracking
        has = tracking.HasField
        url = tracking.url
        cohort_id = tracking.cohort_id if has("cohort_id") else None
        first_source_url = tracking.first_source_url if has("first_source_url") else None
        last_source_url = tracking.last_source_url if has("last_source_url") else None
        referrer = tracking.referrer if has("referrer") else None
        device_session_id = tracking.device_session_id if has("device_session_id") else None
    else:
        url = ""
        cohort_id = first_source_url = last_source_url = referrer = device_session_id = None
    billing = (
        f"{parameters.billing_metadata.product}:{parameters.billing_metadata.category}"
        if parameters.HasField("billing_metadata")
        else None
    )
    return event_log_line(
        event_id,
        timestamp,
        f"{event.feature}.{event.action}",
        url,
        user.user_id,
        user.anonymous_user_id if user.HasField("anonymous_user_id") else UNKNOWN_ANONYMOUS_USER,
        client_name or BACKEND_SOURCE,
        argument,
        _dumps(public),
        source.server.version,
        flags,
        cohort_id,
        first_source_url,
        last_source_url,
        referrer,
        device_session_id,
        billing,
        client_label,
    )


def log_line_from_arguments(arguments: dict[str, Any], event_id: str, timestamp: str, exportable: bool) -> str:
    """The same line from an Event's constructor arguments (as protojson_reader gives them)."""
    parameters = arguments.get("parameters", _EMPTY)
    public = {}
    legacy = parameters.get("legacy_metadata")
    if legacy:
        for key, value in legacy.items():
            public[key] = float(value)
    metadata = parameters.get("metadata")
    if metadata:
        public.update(metadata)
    public[EXPORTABLE_MARKER] = exportable
    private = parameters.get("private_metadata")
    flags = arguments.get("feature_flags")
    user = arguments.get("user", _EMPTY)
    source = arguments.get("source", _EMPTY)
    client = source.get("client")
    if client is not None:
        client_name = client.get("name", "")
        client_label = f"{client_name} {client['version']}" if "version" in client else client_name
    else:
        client_name, client_label = "", None
    tracking = arguments.get("marketing_tracking", _EMPTY)
    billing = parameters.get("billing_metadata")
    anonymous = user.get("anonymous_user_id")
    return event_log_line(
        event_id,
        timestamp,
        f"{arguments.get('feature', '')}.{arguments.get('action', '')}",
        tracking.get("url", ""),
        user.get("user_id", 0),
        UNKNOWN_ANONYMOUS_USER if anonymous is None else anonymous,
        client_name or BACKEND_SOURCE,
        None if private is None else _dumps(private),  # already plain values, finite, checked for depth
        _dumps(public),
        source.get("server", _EMPTY).get("version", ""),
        None if flags is None else _dumps(flags.get("flags", _EMPTY)),
        tracking.get("cohort_id"),
        tracking.get("first_source_url"),
        tracking.get("last_source_url"),
        tracking.get("referrer"),
        tracking.get("device_session_id"),
        None if billing is None else f"{billing.get('product', '')}:{billing.get('category', '')}",
        client_label,
    )


_EMPTY: dict[str, Any] = {}


def _dumps(value: Any) -> str:
    """Compact JSON for jsonb: NaN and infinities as null (orjson's own rule), NUL as U+FFFD."""
    text = orjson.dumps(value)
    if _ESCAPED_NUL in text and _has_nul(value):
        text = orjson.dumps(_without_nul(value))
    return text.decode()


def _has_nul(value: Any) -> bool:
    # `\u0000` in the text may also be a string holding a backslash and "u0000": look at the values.
    if type(value) is str:
        return _NUL in value
    if type(value) is dict:
        return any(_NUL in key or _has_nul(item) for key, item in value.items())
    if type(value) is list:
        return any(_has_nul(item) for item in value)
    return False


def _without_nul(value: Any) -> Any:
    if type(value) is str:
        return value.replace(_NUL, _REPLACEMENT)
    if type(value) is dict:
        return {key.replace(_NUL, _REPLACEMENT): _without_nul(item) for key, item in value.items()}
    if type(value) is list:
        return [_without_nul(item) for item in value]
    return value


def _struct(struct: struct_pb2.Struct, budget: int) -> dict[str, Any]:
    """A Struct as plain values, no deeper than `budget` message levels (the nesting rule, checked on the way)."""
    if budget < 1:
        raise NestedTooDeep
    fields = struct.fields  # keys and lookups, both in C
    plain = {}
    for key in fields:
        if budget < 3:
            raise NestedTooDeep  # as _value would for the entry's Value
        value = fields[key]
        # Strings and numbers, nearly every value, without a call each: about a fifth of the walk.
        kind = value.WhichOneof("kind")
        if kind == "string_value":
            plain[key] = value.string_value
        elif kind == "number_value":
            plain[key] = value.number_value  # orjson writes NaN and infinities as null
        else:
            plain[key] = _value(value, budget - 2)
    return plain


def _value(value: struct_pb2.Value, budget: int) -> Any:
    if budget < 1:
        raise NestedTooDeep
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        return value.number_value  # orjson writes NaN and infinities as null
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return _struct(value.struct_value, budget - 1)
    if kind == "list_value":
        if budget < 2:
            raise NestedTooDeep
        return [_value(item, budget - 2) for item in value.list_value.values]
    return None


@lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    # The year always in four digits: Postgres reads a year of 1 to 99 as 2001..2069 or 1970..1999.
    t = time.gmtime(seconds)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def postgres_timestamp(seconds: int, nanos: int) -> str:
    """A valid protobuf Timestamp as Postgres timestamptz text; events of one batch mostly share seconds."""
    return f"{_second(seconds)}.{nanos // 1000:06d}+00"
