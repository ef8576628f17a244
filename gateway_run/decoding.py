"""Request bytes to messages, one event at a time.

The server takes raw bytes from gRPC and decodes them here, so that a malformed request is
answered INVALID_ARGUMENT with a reason, not gRPC's generic INTERNAL.

A request is decoded through wire-compatible views of the API's messages in which each event
is `bytes`: the same field numbers and wire types, so any bytes that parse as the real message
parse as its view, but an event is left undecoded until `decode_event` takes it on its own.
One event that protobuf refuses (nested past its depth limit, invalid UTF-8, corrupt) then
costs only itself: it is dead-lettered with its reason while the rest of its message is
published, instead of failing the whole request and, with it, every event behind it in the
exporter's queue. It also means the parser meets an event at the depth the exporter met it
(a bare `Event`), not two levels deeper inside the request.

The views are built from a descriptor here rather than generated, being private to the gateway:

    message EventsPayload { repeated bytes events = 1; }
    message RecordEventsRequest {
      oneof payload { telemetrygateway.v1.RecordEventsRequestMetadata metadata = 1; EventsPayload events = 2; }
    }
    message RecordEventRequest { optional telemetrygateway.v1.RecordEventsRequestMetadata metadata = 1;
                                 optional bytes event = 2; }
    message EventHead { optional bytes id = 1; optional bytes feature = 3; optional bytes action = 4; }

(proto2, so that `event` keeps its presence; `EventHead` reads what identifies an event that
cannot be decoded whole, skipping everything else unparsed.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from gateway_run.errors import RequestRejected
from telemetry_events import pb

M = TypeVar("M", bound=Message)

_PACKAGE = "gateway_run.wire"
_FieldProto = descriptor_pb2.FieldDescriptorProto


def _field(name: str, number: int, kind: int, label: int = _FieldProto.LABEL_OPTIONAL, **extra: Any) -> _FieldProto:
    return _FieldProto(name=name, number=number, type=kind, label=label, **extra)


def _build_views() -> dict[str, type[Message]]:
    metadata_type = "." + pb.RecordEventsRequestMetadata.DESCRIPTOR.full_name
    message_kind, bytes_kind = _FieldProto.TYPE_MESSAGE, _FieldProto.TYPE_BYTES
    file = descriptor_pb2.FileDescriptorProto(
        name="gateway_run/wire_views.proto",
        package=_PACKAGE,
        syntax="proto2",
        dependency=[pb.DESCRIPTOR.name],
        message_type=[
            descriptor_pb2.DescriptorProto(
                name="EventsPayload", field=[_field("events", 1, bytes_kind, _FieldProto.LABEL_REPEATED)]
            ),
            descriptor_pb2.DescriptorProto(
                name="RecordEventsRequest",
                field=[
                    _field("metadata", 1, message_kind, type_name=metadata_type, oneof_index=0),
                    _field("events", 2, message_kind, type_name=f".{_PACKAGE}.EventsPayload", oneof_index=0),
                ],
                oneof_decl=[descriptor_pb2.OneofDescriptorProto(name="payload")],
            ),
            descriptor_pb2.DescriptorProto(
                name="RecordEventRequest",
                field=[_field("metadata", 1, message_kind, type_name=metadata_type), _field("event", 2, bytes_kind)],
            ),
            descriptor_pb2.DescriptorProto(
                name="EventHead",
                field=[_field("id", 1, bytes_kind), _field("feature", 3, bytes_kind), _field("action", 4, bytes_kind)],
            ),
        ],
    )
    pool = descriptor_pool.Default()
    pool.AddSerializedFile(file.SerializeToString())
    return {
        message.name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{message.name}"))
        for message in file.message_type
    }


_VIEWS = _build_views()
EventsPayloadView = _VIEWS["EventsPayload"]
RecordEventsRequestView = _VIEWS["RecordEventsRequest"]
RecordEventRequestView = _VIEWS["RecordEventRequest"]
_EventHead = _VIEWS["EventHead"]

# What upb says (after "Error parsing message with type ...: "), and what a caller can act on.
_PARSER_REASONS = {
    "Exceeded upb_DecodeOptions_MaxDepth": "nested more than 100 levels deep (protobuf decodes no deeper)",
    "String field had bad UTF-8": "a string field is not valid UTF-8",
    "Wire format was corrupt": "not valid protobuf (truncated or corrupt)",
}


class UndecodableEvent(Exception):
    """An event's bytes do not decode as an Event; `reason` says why, in words a caller can act on."""

    def __init__(self, reason: str, head: EventHead) -> None:
        super().__init__(reason)
        self.reason = reason
        self.head = head


@dataclass(frozen=True)
class EventHead:
    """What identifies an event that cannot be decoded whole, as far as it can be read ("" if not).

    `id` is exactly what the caller sent (it acknowledges by it); feature and action are for the
    dead letter's attributes only, with anything undecodable replaced.
    """

    id: str = ""
    feature: str = ""
    action: str = ""


def decode(raw: bytes, message_type: type[M], name: str | None = None) -> M:
    """Parses `raw` as `message_type`; raises RequestRejected(INVALID_ARGUMENT) when it is not one."""
    try:
        return message_type.FromString(raw)
    except DecodeError as error:
        name = name or message_type.DESCRIPTOR.name
        raise RequestRejected(
            grpc.StatusCode.INVALID_ARGUMENT, f"request is not a valid {name}: {_parser_reason(error)}"
        ) from None


def decode_events_request(raw: bytes) -> Any:
    """A RecordEventsRequest with its events left as bytes (`.events.events`); RequestRejected if malformed."""
    return decode(raw, RecordEventsRequestView, "RecordEventsRequest")


def decode_event_request(raw: bytes) -> Any:
    """A RecordEventRequest with its event left as bytes (`.event`); RequestRejected if malformed."""
    return decode(raw, RecordEventRequestView, "RecordEventRequest")


def events_request_bytes(events: list[bytes]) -> bytes:
    """A serialized RecordEventsRequest carrying these serialized events, without decoding them."""
    view = RecordEventsRequestView()
    view.events.events.extend(events)
    return view.SerializeToString()


def decode_event(raw: bytes) -> pb.Event:
    """One event on its own; raises UndecodableEvent with the reason and what could be read of it."""
    try:
        return pb.Event.FromString(raw)
    except DecodeError as error:
        raise UndecodableEvent(_parser_reason(error), _read_head(raw)) from None


def _read_head(raw: bytes) -> EventHead:
    try:
        head = _EventHead.FromString(raw)
    except DecodeError:
        return EventHead()  # corrupt at the top level: nothing can be trusted
    try:
        event_id = head.id.decode("utf-8")
    except UnicodeDecodeError:
        event_id = ""  # could never have been acknowledged by: gRPC strings are UTF-8
    return EventHead(event_id, head.feature.decode("utf-8", "replace"), head.action.decode("utf-8", "replace"))


def _parser_reason(error: DecodeError) -> str:
    text = str(error)
    detail = text.split("': ", 1)[1] if "': " in text else text
    return _PARSER_REASONS.get(detail, detail or "not valid protobuf")
