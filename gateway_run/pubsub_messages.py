"""One received event to one Pub/Sub message, or to the reason it can never become one; messages
to whole PublishRequests.

Per event, in this order: merge legacy integer metadata into `metadata`, redact with the
central policy (first, so nothing unredacted is ever rendered), validate, spell the ID in its
canonical form, render the body `{"metadata": ..., "event": ...}`, derive the attributes, and
check the limits Pub/Sub would enforce (the emulator enforces none of the attribute limits,
so tests would not notice).

One ID has one spelling downstream: the body and the `event.id` attribute carry the canonical
UUID (lower-case, hyphenated) whatever spelling the caller used, so consumers can deduplicate
on it; the caller is still acknowledged with the ID as it sent it, since that is what it
matches its own records by.

An event that cannot even be decoded is dead-lettered with what could be read of it (its ID,
feature and action) and never its bytes: nothing redaction did not examine leaves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.protobuf import text_format

from gateway_run.decoding import UndecodableEvent
from telemetry_events import pb
from telemetry_events.ids import canonical_uuid
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

# Pub/Sub's limits on one PublishRequest.
REQUEST_MAX_MESSAGES = 1000
REQUEST_MAX_BYTES = 10_000_000
# A message's framing inside a request, beyond its data and attribute text: tags and lengths.
_MESSAGE_FRAMING_BYTES = 12
_ATTRIBUTE_FRAMING_BYTES = 10

# Reasons an event is dead-lettered, as the `reason` attribute says them.
UNDECODABLE = "undecodable"
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
    """A message ready to publish; `event_id` is the ID as the caller sent it (what it is acknowledged by)."""

    event_id: str
    data: bytes
    attributes: dict[str, str]
    size: int = 0  # data plus attribute text, as Pub/Sub counts it


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
    sent_id = event.id
    try:
        event.id = canonical_uuid(sent_id)
    except ValueError:
        id_checked = False  # validation names the problem
    else:
        id_checked = True
    problems = event_problems(event, id_checked=id_checked)
    if problems:
        return _unpublishable(event, context, INVALID, "; ".join(problems), sent_id=sent_id)
    try:
        event_json = message_to_json(event)
    except EncodeError as error:
        return _unpublishable(event, context, UNENCODABLE, str(error), sent_id=sent_id)
    data = f'{{"metadata":{context.metadata_json},"event":{event_json}}}'.encode()
    attributes = attributes_for(context.source, event)
    problem = attribute_problem(attributes)
    if problem:
        return _unpublishable(event, context, ATTRIBUTES, problem, event_json, sent_id=sent_id)
    size = message_size(data, attributes)
    if size > max_message_bytes:
        detail = f"message of {size} bytes is over the limit of {max_message_bytes} bytes"
        return _unpublishable(event, context, OVERSIZED, detail, event_json, size, sent_id=sent_id)
    return Outgoing(sent_id, data, attributes, size)


def undecodable(raw_size: int, error: UndecodableEvent, context: StreamContext) -> Unpublishable:
    """The dead letter of an event whose bytes do not decode: its reason and what identifies it, no content."""
    head = error.head
    detail = f"event of {raw_size} bytes does not decode: {error.reason}"
    body = {"reason": UNDECODABLE, "detail": detail, "size": raw_size}
    data = f'{{"metadata":{context.metadata_json},{dumps(body)[1:-1]}}}'.encode()
    try:
        published_id = canonical_uuid(head.id)
    except ValueError:
        published_id = head.id
    attributes = _dead_letter_attributes(UNDECODABLE, context, published_id, head.feature, head.action, raw_size)
    return Unpublishable(head.id, UNDECODABLE, detail, raw_size, Outgoing(head.id, data, attributes))


def _unpublishable(
    event: pb.Event,
    context: StreamContext,
    reason: str,
    detail: str,
    event_json: str | None = None,
    size: int | None = None,
    sent_id: str | None = None,
) -> Unpublishable:
    """Builds the dead letter: the (already redacted) event itself when small, else a bounded excerpt.

    `sent_id`: the ID as the caller sent it, when `event.id` has been respelled canonical since.
    """
    sent_id = event.id if sent_id is None else sent_id
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
    attributes = _dead_letter_attributes(reason, context, event.id, event.feature, event.action, size)
    return Unpublishable(sent_id, reason, detail, size, Outgoing(sent_id, data, attributes))


def _dead_letter_attributes(
    reason: str, context: StreamContext, event_id: str, feature: str, action: str, size: int
) -> dict[str, str]:
    return {
        "reason": reason,
        "publisher.source": truncate_utf8(context.source, MAX_ATTRIBUTE_VALUE_BYTES),
        "event.id": truncate_utf8(event_id, MAX_ATTRIBUTE_VALUE_BYTES),
        "event.feature": truncate_utf8(feature, MAX_ATTRIBUTE_VALUE_BYTES),
        "event.action": truncate_utf8(action, MAX_ATTRIBUTE_VALUE_BYTES),
        "size": str(size),
    }


def truncate_utf8(text: str, max_bytes: int) -> str:
    """At most `max_bytes` of UTF-8, never splitting a character."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes].decode("utf-8", "ignore")


@dataclass
class PublishRequestBytes:
    """One serialized PublishRequest for one topic, with the acknowledgement of each of its messages, in order."""

    topic: str
    data: bytes
    event_ids: list[str]
    size: int  # an upper bound of the serialized size, for the in-flight byte budget

    @property
    def messages(self) -> int:
        return len(self.event_ids)


class PublishRequests:
    """Collects one topic's messages into serialized PublishRequests within Pub/Sub's limits per request.

    A message goes into the current request unless that would pass 1,000 messages or 10 MB, in
    which case the request is closed and a new one started (a message alone is never refused
    here: the gateway's own message limit is lower than Pub/Sub's request limit).
    """

    def __init__(self, topic: str) -> None:
        from google.pubsub_v1.types import PublishRequest

        self._topic = topic
        self._new_request = PublishRequest.pb()
        self._topic_bytes = len(topic.encode()) + 3
        self._done: list[PublishRequestBytes] = []
        self._request: Any = None
        self._event_ids: list[str] = []
        self._size = 0

    def add(self, message: Outgoing) -> int:
        """Adds `message`; returns the number (from 0) of the request it went into."""
        size = (message.size or message_size(message.data, message.attributes)) + _MESSAGE_FRAMING_BYTES
        size += _ATTRIBUTE_FRAMING_BYTES * len(message.attributes)
        if self._request is not None and (
            len(self._event_ids) == REQUEST_MAX_MESSAGES or self._size + size > REQUEST_MAX_BYTES
        ):
            self._close()
        if self._request is None:
            self._request = self._new_request(topic=self._topic)
            self._size = self._topic_bytes
        self._request.messages.add(data=message.data).attributes.update(message.attributes)
        self._event_ids.append(message.event_id)
        self._size += size
        return len(self._done)

    def requests(self) -> list[PublishRequestBytes]:
        """Every request, serialized; the collector is empty afterwards."""
        if self._request is not None:
            self._close()
        done, self._done = self._done, []
        return done

    def _close(self) -> None:
        self._done.append(
            PublishRequestBytes(self._topic, self._request.SerializeToString(), self._event_ids, self._size)
        )
        self._request, self._event_ids, self._size = None, [], 0
