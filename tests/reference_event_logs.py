"""Today's event_logs translator before issue 14 (commit 43086a3), kept as the reference the lean one must match.

Its row (EventLogRow) and its COPY text (`log_line`, from the store's _log_stream of then) are
what `event_logs` held; the translator that replaced it must write identical rows.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, NamedTuple

from google.protobuf import struct_pb2

from telemetry_events import pb

BACKEND_SOURCE = "BACKEND"
UNKNOWN_ANONYMOUS_USER = "unknown"
# Marks in public_argument whether the event was queued for export.
EXPORTABLE_MARKER = "telemetry.exportable"


class EventLogRow(NamedTuple):
    """A tuple rather than a dataclass: one is built per recorded event, on the hot path."""

    event_id: str
    exportable: bool
    name: str
    url: str
    user_id: int
    anonymous_user_id: str
    source: str
    argument_json: str | None
    public_argument_json: str
    version: str
    timestamp: str  # as Postgres reads it, UTC
    feature_flags_json: str | None
    cohort_id: str | None
    first_source_url: str | None
    last_source_url: str | None
    referrer: str | None
    device_session_id: str | None
    billing_product_category: str | None
    client: str | None


def event_log_row(event: pb.Event, exportable: bool) -> EventLogRow:
    parameters = event.parameters
    # dict() first: iterating a protobuf map directly goes through slow Python mixins.
    public: dict[str, Any] = {_storable(key): float(value) for key, value in dict(parameters.legacy_metadata).items()}
    public.update((_storable(key), _json_number(value)) for key, value in dict(parameters.metadata).items())
    public[EXPORTABLE_MARKER] = exportable
    has_client = event.source.HasField("client")
    user = event.user
    tracking = event.marketing_tracking if event.HasField("marketing_tracking") else None
    billing = parameters.billing_metadata if parameters.HasField("billing_metadata") else None
    return EventLogRow(
        event_id=event.id,
        exportable=exportable,
        name=f"{event.feature}.{event.action}",
        url=_storable(tracking.url) if tracking is not None else "",
        user_id=user.user_id if user.HasField("user_id") else 0,
        anonymous_user_id=(
            _storable(user.anonymous_user_id) if user.HasField("anonymous_user_id") else UNKNOWN_ANONYMOUS_USER
        ),
        source=_storable(event.source.client.name) if has_client and event.source.client.name else BACKEND_SOURCE,
        argument_json=(
            json.dumps(struct_to_python(parameters.private_metadata))
            if parameters.HasField("private_metadata")
            else None
        ),
        public_argument_json=json.dumps(public),
        version=_storable(event.source.server.version),
        timestamp=postgres_timestamp(event.timestamp.seconds, event.timestamp.nanos),
        feature_flags_json=(
            json.dumps({_storable(k): _storable(v) for k, v in dict(event.feature_flags.flags).items()})
            if event.HasField("feature_flags")
            else None
        ),
        cohort_id=_optional(tracking, "cohort_id"),
        first_source_url=_optional(tracking, "first_source_url"),
        last_source_url=_optional(tracking, "last_source_url"),
        referrer=_optional(tracking, "referrer"),
        device_session_id=_optional(tracking, "device_session_id"),
        billing_product_category=_storable(f"{billing.product}:{billing.category}") if billing is not None else None,
        client=_client_label(event.source.client) if has_client else None,
    )


def struct_to_python(struct: struct_pb2.Struct) -> dict[str, Any]:
    """Struct to plain Python values: several times faster than json_format.MessageToDict."""
    return {_storable(key): _value_to_python(value) for key, value in dict(struct.fields).items()}


def _storable(text: str) -> str:
    # Postgres text and jsonb cannot hold NUL; this copy is best-effort, so it is replaced.
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _value_to_python(value: struct_pb2.Value) -> Any:
    fields = value.ListFields()  # one call yields both the kind and the value
    if not fields:
        return None
    descriptor, content = fields[0]
    kind = descriptor.name
    if kind == "string_value":
        return _storable(content)
    if kind == "number_value":
        return _json_number(content)
    if kind == "bool_value":
        return content
    if kind == "struct_value":
        return struct_to_python(content)
    if kind == "list_value":
        return [_value_to_python(item) for item in content.values]
    return None


@lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    # The year always in four digits: Postgres reads a year of 1 to 99 as 2001..2069 or 1970..1999.
    t = time.gmtime(seconds)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def postgres_timestamp(seconds: int, nanos: int) -> str:
    """A valid protobuf Timestamp as Postgres timestamptz text; events of one batch mostly share seconds."""
    return f"{_second(seconds)}.{nanos // 1000:06d}+00"


def _json_number(number: float) -> float | None:
    # jsonb has no NaN or infinity.
    return number if math.isfinite(number) else None


def _optional(message: Any, field: str) -> str | None:
    if message is None or not message.HasField(field):
        return None
    return _storable(str(getattr(message, field)))


def _client_label(client: pb.EventSource.Client) -> str:
    return _storable(f"{client.name} {client.version}" if client.HasField("version") else client.name)


_NULL = "\\N"


def _text(value: str | None) -> str:
    if value is None:
        return _NULL
    # str.replace runs in C; str.translate with a mapping costs a Python lookup per character.
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _log_stream(rows: Iterable[EventLogRow]) -> io.BytesIO:
    text = _text
    lines = [
        "\t".join(
            (
                row.event_id,
                row.timestamp,
                text(row.name),
                text(row.url),
                str(row.user_id),
                text(row.anonymous_user_id),
                text(row.source),
                text(row.argument_json),
                text(row.public_argument_json),
                text(row.version),
                text(row.feature_flags_json),
                text(row.cohort_id),
                text(row.first_source_url),
                text(row.last_source_url),
                text(row.referrer),
                text(row.device_session_id),
                text(row.billing_product_category),
                text(row.client),
            )
        )
        for row in rows
    ]
    lines.append("")
    return io.BytesIO("\n".join(lines).encode())


def log_line(event: pb.Event, exportable: bool) -> str:
    """The COPY line the old store wrote for this event (event_id as the event spells it)."""
    return _log_stream([event_log_row(event, exportable)]).getvalue().decode().rstrip("\n")
