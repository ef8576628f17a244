"""A real gRPC server on a real port whose answers a caller scripts: which IDs to acknowledge, how slowly.

It speaks the RecordEvents protocol like the gateway (metadata first, one answer per events
message, in order) but publishes nothing; it records what each stream received, so tests
can tell exactly which rows were in flight where.

It can also behave as other gateways do:
- an older gateway (or the reference) that decodes a whole message at once: a message it
  cannot decode ends the stream (gRPC answers INTERNAL), and `refuse` ends it with
  INVALID_ARGUMENT for a message holding an event it names;
- a gateway refusing the instance at metadata time (`refuse_metadata`: INVALID_ARGUMENT, as
  the reference answers a bad license key);
- a busy gateway (`busy`): it ends a stream with RESOURCE_EXHAUSTED "gateway busy" carrying a
  google.rpc.RetryInfo in the grpc-status-details-bin trailer, as agreed with the gateway;
- a stuck one (`hold`): events messages wait until the event is set.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from localdev.ports import free_port
from telemetry_events import pb
from telemetry_events.rpc import SERVICE_NAME


@dataclass
class StreamLog:
    request_id: str = ""
    identifier_kind: str = ""
    license_key: str = ""
    received: list[str] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    events: list[pb.Event] = field(default_factory=list)
    message_sizes: list[int] = field(default_factory=list)


BUSY_DETAILS = "gateway busy: no worker could start this stream's message in time; retry later"


def busy_status_trailer(retry_after: float) -> tuple[str, bytes]:
    """The grpc-status-details-bin trailer of a "gateway busy" RESOURCE_EXHAUSTED, with its RetryInfo."""
    delay = duration_pb2.Duration()
    delay.FromTimedelta(datetime.timedelta(seconds=retry_after))
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=BUSY_DETAILS, details=[detail])
    return ("grpc-status-details-bin", status.SerializeToString())


class ScriptedGateway:
    def __init__(
        self,
        acknowledge: Callable[[pb.Event], bool] = lambda event: True,
        delay_per_message: float = 0.0,
        keep_events: bool = False,
        keep_ids: bool = True,
        refuse: Callable[[pb.Event], str] | None = None,
        refuse_as_undecodable: bool = False,
        refuse_metadata: str = "",
        busy: Callable[[int, int], float | None] | None = None,
        hold: threading.Event | None = None,
        keep_raw: bool = False,
        max_receive_bytes: int = 16 * 1024 * 1024,
    ):
        """
        Args:
            refuse: a reason to end the stream with INVALID_ARGUMENT for a message holding this event ("" = none).
            refuse_as_undecodable: `refuse` fails the message's decoding instead (gRPC answers INTERNAL).
            refuse_metadata: end every stream with INVALID_ARGUMENT and this detail when its metadata arrives.
            busy: (stream number, events message number in it, from 0) -> seconds to retry after, to end the
                stream "busy" before answering that message; None to go on.
            hold: events messages wait until it is set (a stuck gateway).
            keep_raw: keep every request's bytes as received, in `raw_requests`.
        """
        self.acknowledge = acknowledge
        self.delay_per_message = delay_per_message
        self.keep_events = keep_events
        self.keep_ids = keep_ids  # off for benchmarks of millions of events
        self.refuse = refuse
        self.refuse_as_undecodable = refuse_as_undecodable
        self.refuse_metadata = refuse_metadata
        self.busy = busy
        self.hold = hold
        self.keep_raw = keep_raw
        self.raw_requests: list[bytes] = []
        self.answered = 0
        self.streams: list[StreamLog] = []
        self.metadata_seen: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self.port = free_port()
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8),
            options=[("grpc.max_receive_message_length", max_receive_bytes)],
        )
        handler = grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "RecordEvents": grpc.stream_stream_rpc_method_handler(
                    self._record_events,
                    request_deserializer=self._deserialize,
                    response_serializer=pb.RecordEventsResponse.SerializeToString,
                )
            },
        )
        self._server.add_generic_rpc_handlers((handler,))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, credentials: grpc.ServerCredentials | None = None) -> ScriptedGateway:
        if credentials is None:
            self._server.add_insecure_port(f"127.0.0.1:{self.port}")
        else:
            self._server.add_secure_port(f"127.0.0.1:{self.port}", credentials)
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)

    def received_ids(self) -> list[str]:
        with self._lock:
            return [i for s in self.streams for i in s.received]

    def _deserialize(self, raw: bytes) -> pb.RecordEventsRequest:
        # A message that cannot be decoded raises here: gRPC ends the stream with INTERNAL, as an
        # older gateway that decodes whole messages does.
        if self.keep_raw:
            with self._lock:
                self.raw_requests.append(raw)
        request = pb.RecordEventsRequest.FromString(raw)
        if self.refuse is not None and self.refuse_as_undecodable and any(map(self.refuse, request.events.events)):
            raise ValueError("cannot decode this message")
        return request

    def _record_events(self, requests, context):
        log = StreamLog()
        with self._lock:
            stream_number = len(self.streams)
            self.streams.append(log)
            self.metadata_seen.append(dict(context.invocation_metadata()))
        first = True
        message_number = -1
        for request in requests:
            if first:
                if request.WhichOneof("payload") != "metadata":
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "metadata must come first")
                log.request_id = request.metadata.request_id
                log.identifier_kind = request.metadata.identifier.WhichOneof("identifier") or ""
                log.license_key = request.metadata.identifier.licensed_instance.license_key
                if self.refuse_metadata:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, self.refuse_metadata)
                first = False
                continue
            message_number += 1
            retry_after = self.busy(stream_number, message_number) if self.busy else None
            if retry_after is not None:
                context.set_trailing_metadata([busy_status_trailer(retry_after)])
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, BUSY_DETAILS)
            if self.refuse is not None and not self.refuse_as_undecodable:
                reasons = [reason for reason in map(self.refuse, request.events.events) if reason]
                if reasons:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request is not acceptable: {reasons[0]}")
            if self.hold is not None and request.events.events:
                self.hold.wait()
            if self.delay_per_message:
                time.sleep(self.delay_per_message)
            log.message_sizes.append(request.ByteSize())
            acknowledged = []
            for event in request.events.events:
                if self.keep_ids:
                    log.received.append(event.id)
                if self.keep_events:
                    log.events.append(event)
                if self.acknowledge(event):
                    acknowledged.append(event.id)
            if self.keep_ids:
                log.acknowledged.extend(acknowledged)
            with self._lock:
                self.answered += len(acknowledged)
            yield pb.RecordEventsResponse(succeeded_events=acknowledged)
