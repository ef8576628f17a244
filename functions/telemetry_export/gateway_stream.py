"""One RecordEvents stream: metadata first, then events in bounded messages, answers read as they come.

The gateway answers each events message once, in the order the messages were sent, with
the IDs it published. Sending and reading are decoupled (a feeding queue and a reader
thread), so the exporter can claim and encode its next batch while the gateway works on
the current one.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import grpc

from telemetry_events import pb
from telemetry_events.rpc import RECORD_EVENTS
from telemetry_export.settings import GatewayIdentity

_END = object()
# Room for a little more than two batches of messages: enough to keep the gateway busy,
# little enough that memory stays bounded whatever the backlog.
_OUTBOX_MESSAGES = 64
# Bytes a repeated-field entry costs beyond the event itself: tag and length prefix.
_ENTRY_OVERHEAD = 6


def metadata_request(identity: GatewayIdentity, request_id: str) -> pb.RecordEventsRequest:
    request = pb.RecordEventsRequest()
    request.metadata.request_id = request_id
    if identity.license_key:
        licensed = request.metadata.identifier.licensed_instance
        licensed.license_key = identity.license_key
        licensed.instance_id = identity.instance_id
        licensed.external_url = identity.external_url
    else:
        unlicensed = request.metadata.identifier.unlicensed_instance
        unlicensed.instance_id = identity.instance_id
        unlicensed.external_url = identity.external_url
    return request


def split_messages(payloads: Sequence[tuple[str, bytes]], max_bytes: int) -> list[tuple[list[str], bytes]]:
    """Groups encoded events into RecordEventsRequest messages of at most `max_bytes` each.

    Works on the events' wire bytes: a RecordEventsRequest{events: {events: [...]}} is the
    concatenation of length-prefixed entries, so no event is parsed or encoded again. An
    event too big for any message travels alone: the gateway dead-letters it as oversized.
    """
    messages: list[tuple[list[str], bytes]] = []
    ids: list[str] = []
    parts: list[bytes] = []
    size = 0
    for event_id, payload in payloads:
        entry = _length_prefixed(0x0A, payload)  # EventsPayload.events = 1
        if parts and size + len(entry) + _ENTRY_OVERHEAD > max_bytes:
            messages.append((ids, _events_request(parts)))
            ids, parts, size = [], [], 0
        ids.append(event_id)
        parts.append(entry)
        size += len(entry)
    if parts:
        messages.append((ids, _events_request(parts)))
    return messages


def _events_request(entries: list[bytes]) -> bytes:
    return _length_prefixed(0x12, b"".join(entries))  # RecordEventsRequest.events = 2


def _length_prefixed(tag: int, body: bytes) -> bytes:
    length = len(body)
    varint = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        if length:
            varint.append(byte | 0x80)
        else:
            varint.append(byte)
            return bytes([tag]) + bytes(varint) + body


@dataclass
class SentBatch:
    """The messages of one claimed batch, and what the gateway has said about them so far."""

    ids: frozenset[str]
    messages: int
    answered: int = 0
    acknowledged: set[str] = field(default_factory=set)

    @property
    def complete(self) -> bool:
        return self.answered >= self.messages


class StreamBroken(Exception):
    """The stream ended with an error; batches not fully answered keep what they had."""


class GatewayStream:
    """A RecordEvents call fed batch by batch. Not thread-safe: one exporter thread uses it."""

    def __init__(self, channel: grpc.Channel, identity: GatewayIdentity, timeout: float):
        self.request_id = str(uuid.uuid4())
        self._outbox: queue.Queue[object] = queue.Queue(maxsize=_OUTBOX_MESSAGES)
        self._outbox.put(metadata_request(identity, self.request_id).SerializeToString())
        self._unanswered: deque[SentBatch] = deque()  # one entry per message, oldest first
        self._changed = threading.Condition()
        self._finished = False
        self.error: grpc.RpcError | None = None
        # Requests go out already encoded (see split_messages), so the serializer passes bytes through.
        call = channel.stream_stream(
            RECORD_EVENTS, request_serializer=lambda raw: raw, response_deserializer=pb.RecordEventsResponse.FromString
        )
        self._call = call(self._requests(), timeout=timeout, wait_for_ready=False)
        self._reader = threading.Thread(target=self._read, name="gateway-responses", daemon=True)
        self._reader.start()

    def send(self, payloads: Sequence[tuple[str, bytes]], max_message_bytes: int) -> SentBatch:
        """Queues one batch's events; blocks while the outbox is full (bounded memory)."""
        messages = split_messages(payloads, max_message_bytes)
        batch = SentBatch(frozenset(event_id for event_id, _ in payloads), len(messages))
        for _, message in messages:
            with self._changed:
                if self._finished:
                    raise StreamBroken(self.describe_error())
                self._unanswered.append(batch)
            self._put(message)
        return batch

    def _put(self, message: bytes) -> None:
        while True:
            try:
                self._outbox.put(message, timeout=0.5)
                return
            except queue.Full:
                with self._changed:
                    if self._finished:
                        raise StreamBroken(self.describe_error()) from None

    def close(self) -> None:
        """No more batches: the gateway answers what it has, then ends the stream."""
        try:
            self._outbox.put(_END, timeout=5)
        except queue.Full:
            self.cancel()

    def cancel(self) -> None:
        self._call.cancel()

    def wait(self, batch: SentBatch, timeout: float) -> bool:
        """Waits until `batch` is fully answered or the stream ends; True when answered."""
        with self._changed:
            self._changed.wait_for(lambda: batch.complete or self._finished, timeout=max(timeout, 0))
            return batch.complete

    def wait_finished(self, timeout: float) -> bool:
        self._reader.join(max(timeout, 0))
        return not self._reader.is_alive()

    @property
    def broken(self) -> bool:
        with self._changed:
            return self.error is not None

    def describe_error(self) -> str:
        error = self.error
        if error is None:
            return "stream ended"
        code = error.code() if hasattr(error, "code") else None
        details = error.details() if hasattr(error, "details") else str(error)
        return f"gateway stream failed: {code.name if code else 'UNKNOWN'}: {details}"

    def _requests(self) -> Iterator[object]:
        while True:
            message = self._outbox.get()
            if message is _END:
                return
            yield message

    def _read(self) -> None:
        try:
            for response in self._call:
                with self._changed:
                    batch = self._unanswered.popleft() if self._unanswered else None
                    if batch is not None:
                        batch.acknowledged.update(i for i in response.succeeded_events if i in batch.ids)
                        batch.answered += 1
                    self._changed.notify_all()
        except grpc.RpcError as error:
            with self._changed:
                self.error = error
        finally:
            with self._changed:
                self._finished = True
                self._changed.notify_all()
            # Unblock a sender waiting on a full outbox of a dead stream.
            while True:
                try:
                    self._outbox.get_nowait()
                except queue.Empty:
                    break
