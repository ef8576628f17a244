"""What a queue row becomes on the wire: the one place that decides, for the exporter and `preview`."""

from __future__ import annotations

from google.protobuf.message import DecodeError

from telemetry_events import pb
from telemetry_events.ids import canonical_uuid
from telemetry_events.redaction import RedactionPolicy
from telemetry_events.validation import event_problems


class Unsendable(Exception):
    """The row can never be sent; the message is its quarantine reason."""


def outgoing_bytes(row_id: str, payload: bytes, policy: RedactionPolicy) -> bytes:
    """The bytes to send for a queue row: parsed, checked against its row, redacted with today's policy.

    Raises:
        Unsendable: the payload is not an Event, names another ID, or breaks an event rule.
    """
    event = pb.Event()
    try:
        event.ParseFromString(payload)
    except DecodeError as error:
        raise Unsendable(f"payload is not a telemetry Event: {error}") from None
    try:
        same_id = canonical_uuid(event.id) == row_id
    except ValueError:
        same_id = False
    if not same_id:
        raise Unsendable(f"payload's event ID {event.id[:80]!r} differs from the row's")
    problems = event_problems(event, id_checked=True)
    if problems:
        raise Unsendable(f"invalid event: {'; '.join(problems)}")
    if (
        event.id == row_id
        and not event.HasField("marketing_tracking")
        and not event.parameters.HasField("private_metadata")
    ):
        return payload  # nothing to strip or respell: send the stored bytes as they are
    event.id = row_id
    # The policy may have been tightened since the event was queued: apply today's.
    return policy.redact(event).SerializeToString()
