"""One RecordEvents stream: metadata first, then events in bounded messages, answers read as they come.

The gateway answers each events message once, in the order the messages were sent, with
the IDs it published (an empty one, the probe, with none). How a stream that ends badly is
told apart (instance refused, busy, message refused, unavailable) is in gateway_errors.
Sending and reading are decoupled (a feeding queue and a reader thread), so the exporter can
claim and encode its next batch while the gateway works on the current one.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import grpc

from telemetry_events import pb
from telemetry_events.rpc import RECORD_EVENTS
from telemetry_export.gateway_errors import GatewayUnavailable, StreamError, classify
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
    message_ids: list[list[str]] = field(default_factory=list)  # each message's event IDs, in order

    @property
    def complete(self) -> bool:
        return self.answered >= self.messages

    def unanswered_messages(self) -> list[list[str]]:
        """The event IDs of each message not answered yet, oldest first."""
        return self.message_ids[self.answered :]


# An events message with no events: the gateway answers it only once it accepted the metadata.
PROBE = _events_request([])


class GatewayStream:
    """A RecordEvents call fed batch by batch. Not thread-safe: one exporter thread uses it.

    The stream opens with the metadata and the probe (an empty events message), and sends no
    event before the probe is answered: until then an error can only be about this instance.
    """

    def __init__(self, channel: grpc.Channel, identity: GatewayIdentity, timeout: float, clock=time.monotonic):
        self.request_id = str(uuid.uuid4())
        self._clock = clock
        self._outbox: queue.Queue[object] = queue.Queue(maxsize=_OUTBOX_MESSAGES)
        self._outbox.put(metadata_request(identity, self.request_id).SerializeToString())
        self._probe = SentBatch(frozenset(), 1, message_ids=[[]])
        self._unanswered: deque[SentBatch] = deque([self._probe])  # one entry per message, oldest first
        self._outbox.put(PROBE)
        self._changed = threading.Condition()
        self._finished = False
        self._progress_at = clock()  # last answer, or when messages became outstanding after none
        self._cancel_reason = ""
        self.error: StreamError | None = None
        # Requests go out already encoded (see split_messages), so the serializer passes bytes through.
        call = channel.stream_stream(
            RECORD_EVENTS, request_serializer=lambda raw: raw, response_deserializer=pb.RecordEventsResponse.FromString
        )
        self._call = call(self._requests(), timeout=timeout, wait_for_ready=False)
        self._reader = threading.Thread(target=self._read, name="gateway-responses", daemon=True)
        self._reader.start()

    @property
    def instance_accepted(self) -> bool:
        """The gateway answered the probe: it took this instance's metadata."""
        with self._changed:
            return self._probe.complete

    def wait_accepted(self, timeout: float) -> bool:
        """Waits for the probe's answer or the stream's end; True when the instance was accepted."""
        with self._changed:
            self._changed.wait_for(lambda: self._probe.complete or self._finished, timeout=max(timeout, 0))
            return self._probe.complete

    def send(self, payloads: Sequence[tuple[str, bytes]], max_message_bytes: int) -> SentBatch:
        """Queues one batch's events; blocks while the outbox is full (bounded memory).

        Raises:
            StreamError: the stream has ended (with the reason it ended).
        """
        messages = split_messages(payloads, max_message_bytes)
        batch = SentBatch(
            frozenset(event_id for event_id, _ in payloads), len(messages), message_ids=[ids for ids, _ in messages]
        )
        for _, message in messages:
            with self._changed:
                if self._finished:
                    raise self._ended()
                if not self._unanswered:
                    self._progress_at = self._clock()
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
                        raise self._ended() from None

    def _ended(self) -> StreamError:
        return self.error or GatewayUnavailable("the gateway ended the stream")

    def close(self) -> None:
        """No more batches: the gateway answers what it has, then ends the stream."""
        try:
            self._outbox.put(_END, timeout=5)
        except queue.Full:
            self.cancel()

    def cancel(self, reason: str = "") -> None:
        """Ends the call; `reason` becomes the stream's error (GatewayUnavailable) when given."""
        with self._changed:
            self._cancel_reason = reason
        self._call.cancel()

    def silent_for(self) -> float:
        """Seconds without any answer while messages are outstanding (0 when none is)."""
        with self._changed:
            if not self._unanswered or self._finished:
                return 0.0
            return self._clock() - self._progress_at

    def wait(self, batch: SentBatch, timeout: float) -> bool:
        """Waits until `batch` is fully answered or the stream ends; True when answered."""
        with self._changed:
            self._changed.wait_for(lambda: batch.complete or self._finished, timeout=max(timeout, 0))
            return batch.complete

    def wait_finished(self, timeout: float) -> bool:
        self._reader.join(max(timeout, 0))
        return not self._reader.is_alive()

    @property
    def finished(self) -> bool:
        with self._changed:
            return self._finished

    @property
    def broken(self) -> bool:
        with self._changed:
            return self.error is not None

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
                    self._progress_at = self._clock()
                    self._changed.notify_all()
        except grpc.RpcError as error:
            with self._changed:
                if self._cancel_reason:
                    self.error = GatewayUnavailable(self._cancel_reason)
                else:
                    self.error = classify(error, instance_accepted=self._probe.complete)
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
