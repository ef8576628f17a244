"""One received event to one Pub/Sub message, or to the reason it can never become one.

Per event, in this order: merge legacy integer metadata into `metadata`, redact with the
central policy (first, so nothing unredacted is ever rendered), validate, render the body
`{"metadata": ..., "event": ...}`, derive the attributes, and check the limits Pub/Sub would
enforce (the emulator enforces none of the attribute limits, so tests would not notice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.protobuf import text_format

from telemetry_events import pb
from telemetry_events.protojson import EncodeError, dumps, message_to_json
from telemetry_events.published_form import merge_legacy_metadata
from telemetry_events.redaction import RedactionPolicy
from telemetry_events.validation import event_problems

# Pub/Sub's attribute limits.
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_KEY_BYTES = 256
MAX_ATTRIBUTE_VALUE_BYTES = 1024

RECORDS_PRIVATE_METADATA_PREFIX = "recordsPrivateMetadata"
# A dead letter keeps the whole (redacted) event when it is at most this big, else an excerpt.
DEADLETTER_FULL_EVENT_BYTES = 64 * 1024
EXCERPT_BYTES = 4096

# Reasons an event is dead-lettered, as the `reason` attribute says them.
INVALID = "invalid"
UNENCODABLE = "unencodable"
OVERSIZED = "oversized"
ATTRIBUTES = "attributes"


@dataclass(frozen=True)
class StreamContext:
    """What every message of one stream shares; small and picklable, it travels with each batch."""

    source: str  # the publisher.source attribute
    metadata_json: str  # the stream's metadata as protojson, license key replaced by its fingerprint
    managed: bool  # managed services are told about unpublishable events instead of having them acknowledged
    request_id: str = ""


@dataclass
class Outgoing:
    """A message ready to publish."""

    event_id: str
    data: bytes
    attributes: dict[str, str]


@dataclass
class Unpublishable:
    """An event that can never be published as it is, and the dead letter that records it."""

    event_id: str
    reason: str
    detail: str
    size: int
    dead_letter: Outgoing = field(repr=False)


def attributes_for(source: str, event: pb.Event) -> dict[str, str]:
    """The routing attributes of an event's message."""
    parameters = event.parameters
    has_private = parameters.HasField("private_metadata") and len(parameters.private_metadata.fields) > 0
    attributes = {
        "publisher.source": source,
        "event.id": event.id,
        "event.feature": event.feature,
        "event.action": event.action,
        "event.hasPrivateMetadata": "true" if has_private else "false",
    }
    prefix_length = len(RECORDS_PRIVATE_METADATA_PREFIX)
    metadata = parameters.metadata
    for key in metadata:
        # Flags such as recordsPrivateMetadataTranscript tell pipelines what the private metadata holds.
        if len(key) > prefix_length and key.startswith(RECORDS_PRIVATE_METADATA_PREFIX) and metadata[key] > 0:
            attributes["event." + key] = "true"
    return attributes


def attribute_problem(attributes: dict[str, str]) -> str | None:
    """What breaks Pub/Sub's attribute limits, or None."""
    if len(attributes) > MAX_ATTRIBUTES:
        return f"{len(attributes)} attributes, at most {MAX_ATTRIBUTES} allowed"
    for key, value in attributes.items():
        # Characters first: a string cannot have fewer UTF-8 bytes than characters, nor 4 times more.
        if len(key) * 4 > MAX_ATTRIBUTE_KEY_BYTES and len(key.encode()) > MAX_ATTRIBUTE_KEY_BYTES:
            return f"attribute key {truncate_utf8(key, 80)!r}... is over {MAX_ATTRIBUTE_KEY_BYTES} bytes"
        if len(value) * 4 > MAX_ATTRIBUTE_VALUE_BYTES and len(value.encode()) > MAX_ATTRIBUTE_VALUE_BYTES:
            return f"attribute {truncate_utf8(key, 80)!r} has a value over {MAX_ATTRIBUTE_VALUE_BYTES} bytes"
    return None


def message_size(data: bytes, attributes: dict[str, str]) -> int:
    """The size Pub/Sub counts against its message limit: data plus attribute keys and values."""
    text = "".join(attributes)
    text += "".join(attributes.values())
    return len(data) + (len(text) if text.isascii() else len(text.encode()))


def prepare(
    event: pb.Event, context: StreamContext, policy: RedactionPolicy, max_message_bytes: int
) -> Outgoing | Unpublishable:
    """Turns `event` (modified in place: merged, redacted) into its message, or says why it cannot be one."""
    merge_legacy_metadata(event)
    policy.redact(event)
    problems = event_problems(event)
    if problems:
        return _unpublishable(event, context, INVALID, "; ".join(problems))
    try:
        event_json = message_to_json(event)
    except EncodeError as error:
        return _unpublishable(event, context, UNENCODABLE, str(error))
    data = f'{{"metadata":{context.metadata_json},"event":{event_json}}}'.encode()
    attributes = attributes_for(context.source, event)
    problem = attribute_problem(attributes)
    if problem:
        return _unpublishable(event, context, ATTRIBUTES, problem, event_json)
    size = message_size(data, attributes)
    if size > max_message_bytes:
        detail = f"message of {size} bytes is over the limit of {max_message_bytes} bytes"
        return _unpublishable(event, context, OVERSIZED, detail, event_json, size)
    return Outgoing(event.id, data, attributes)


def _unpublishable(
    event: pb.Event,
    context: StreamContext,
    reason: str,
    detail: str,
    event_json: str | None = None,
    size: int | None = None,
) -> Unpublishable:
    """Builds the dead letter: the (already redacted) event itself when small, else a bounded excerpt."""
    if size is None:
        size = event.ByteSize()
    body: dict[str, Any] = {"reason": reason, "detail": truncate_utf8(detail, 2000), "size": size}
    if event_json is None:
        try:
            event_json = message_to_json(event)
        except EncodeError:
            # No JSON form: the text format still shows a reader what was sent.
            body["eventText"] = truncate_utf8(text_format.MessageToString(event, as_one_line=True), EXCERPT_BYTES)
    whole_event = event_json is not None and reason != OVERSIZED and len(event_json) <= DEADLETTER_FULL_EVENT_BYTES
    if event_json is not None and not whole_event:
        body["eventExcerpt"] = truncate_utf8(event_json, EXCERPT_BYTES)
    # The metadata and event are JSON text already: spliced in, not parsed and rendered again.
    fields = dumps(body)[1:-1]
    event_part = f',"event":{event_json}' if whole_event else ""
    data = f'{{"metadata":{context.metadata_json},{fields}{event_part}}}'.encode()
    attributes = {
        "reason": reason,
        "publisher.source": truncate_utf8(context.source, MAX_ATTRIBUTE_VALUE_BYTES),
        "event.id": truncate_utf8(event.id, MAX_ATTRIBUTE_VALUE_BYTES),
        "event.feature": truncate_utf8(event.feature, MAX_ATTRIBUTE_VALUE_BYTES),
        "event.action": truncate_utf8(event.action, MAX_ATTRIBUTE_VALUE_BYTES),
        "size": str(size),
    }
    return Unpublishable(event.id, reason, detail, size, Outgoing(event.id, data, attributes))


def truncate_utf8(text: str, max_bytes: int) -> str:
    """At most `max_bytes` of UTF-8, never splitting a character."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes].decode("utf-8", "ignore")
