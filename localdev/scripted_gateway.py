"""A real gRPC server on a real port whose answers a caller scripts: which IDs to acknowledge, how slowly.

It speaks the RecordEvents protocol like the gateway (metadata first, one answer per events
message, in order) but publishes nothing; it records what each stream received, so tests
can tell exactly which rows were in flight where.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field

import grpc

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


class ScriptedGateway:
    def __init__(
        self,
        acknowledge: Callable[[pb.Event], bool] = lambda event: True,
        delay_per_message: float = 0.0,
        keep_events: bool = False,
        keep_ids: bool = True,
        keep_raw: bool = False,
    ):
        self.acknowledge = acknowledge
        self.delay_per_message = delay_per_message
        self.keep_events = keep_events
        self.keep_ids = keep_ids  # off for benchmarks of millions of events
        self.keep_raw = keep_raw  # every request's bytes exactly as they arrived, before any parsing
        self.raw_requests: list[bytes] = []
        self.answered = 0
        self.streams: list[StreamLog] = []
        self.metadata_seen: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self.port = free_port()
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8),
            options=[("grpc.max_receive_message_length", 16 * 1024 * 1024)],
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

    def _deserialize(self, data: bytes) -> pb.RecordEventsRequest:
        if self.keep_raw:
            with self._lock:
                self.raw_requests.append(data)
        return pb.RecordEventsRequest.FromString(data)

    def _record_events(self, requests, context):
        log = StreamLog()
        with self._lock:
            self.streams.append(log)
            self.metadata_seen.append(dict(context.invocation_metadata()))
        first = True
        for request in requests:
            if first:
                if request.WhichOneof("payload") != "metadata":
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "metadata must come first")
                log.request_id = request.metadata.request_id
                log.identifier_kind = request.metadata.identifier.WhichOneof("identifier") or ""
                log.license_key = request.metadata.identifier.licensed_instance.license_key
                first = False
                continue
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
