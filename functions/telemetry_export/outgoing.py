"""What a queue row becomes on the wire: the one place that decides, for the exporter and `preview`.

Only what the schema knows leaves, encoded as the schema says: the stored bytes are parsed,
every unknown field is dropped at every level (inside Struct values and map entries too, and
known fields sent with the wrong wire type, which the parser keeps as unknown), today's
redaction is applied, and the event is serialized again. The stored bytes themselves are sent
only when they are exactly that serialization (deterministic: map entries in key order).
Unknown fields from a newer writer are therefore not carried: no redaction rule ever looked at
them.
"""

from __future__ import annotations

from typing import NamedTuple

from google.protobuf.message import DecodeError

from telemetry_events import pb
from telemetry_events.export_mode import ExportMode, ExportScope
from telemetry_events.ids import canonical_uuid
from telemetry_events.redaction import RedactionPolicy
from telemetry_events.validation import event_problems


class Unsendable(Exception):
    """The row can never be sent; the message is its quarantine reason."""


class Outgoing(NamedTuple):
    data: bytes  # exactly what is sent
    feature: str  # for the export scope
    changed: bool  # `data` differs from the stored bytes


def outgoing(row_id: str, payload: bytes, policy: RedactionPolicy) -> Outgoing:
    """The bytes to send for a queue row: parsed, checked against its row, reduced to the schema, redacted.

    Raises:
        Unsendable: the payload is not an Event, names another ID, or breaks an event rule.
    """
    event = pb.Event()
    try:
        event.ParseFromString(payload)
    except DecodeError as error:
        raise Unsendable(f"payload is not a telemetry Event: {error}") from None
    event.DiscardUnknownFields()
    try:
        same_id = canonical_uuid(event.id) == row_id
    except ValueError:
        same_id = False
    if not same_id:
        raise Unsendable(f"payload's event ID {event.id[:80]!r} differs from the row's")
    problems = event_problems(event, id_checked=True)
    if problems:
        raise Unsendable(f"invalid event: {'; '.join(problems)}")
    event.id = row_id
    # The policy may have been tightened since the event was queued: apply today's. Deterministic:
    # map entries in key order, so that the same event always has the same bytes, whichever process
    # (and map hash seed) wrote them, and stored bytes written the same way are sent as they are.
    data = policy.redact(event).SerializeToString(deterministic=True)
    if data == payload:
        return Outgoing(payload, event.feature, False)
    return Outgoing(data, event.feature, True)


def outgoing_bytes(row_id: str, payload: bytes, policy: RedactionPolicy) -> bytes:
    """The bytes `outgoing` would send for a row."""
    return outgoing(row_id, payload, policy).data


def withheld_reason(scope: ExportScope, feature: str) -> str | None:
    """Why a row with `feature` is held back under today's export scope; None when it may leave."""
    if scope.mode is ExportMode.DISABLED:
        return "export disabled: TELEMETRY_EXPORT_MODE=disabled"
    if not scope.exports(feature):
        return f"outside the export scope: feature {feature[:64]!r} is not in TELEMETRY_EXPORT_FEATURES"
    return None
