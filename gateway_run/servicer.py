"""The gRPC entry points: the RecordEvents protocol and the unary RecordEvent, over raw bytes.

RecordEvents reads ahead: up to TELEMETRY_GATEWAY_PUBLISH_CONCURRENCY events messages of a stream
are processed at once (and no more bytes than TELEMETRY_GATEWAY_MAX_INFLIGHT_BYTES across all
streams), while a writer task sends the responses back in the order the messages came. A
stream that breaks the protocol is first drained (its accepted batches are answered, so the
caller keeps their acknowledgements) and then ended with the status of its violation. On
SIGTERM, streams stop reading, drain the same way and end with UNAVAILABLE: the exporter
reconnects, to another instance.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from gateway_run.batches import BatchResult
from gateway_run.decoding import decode_event_request, decode_events_request, events_request_bytes
from gateway_run.errors import RequestRejected
from gateway_run.identity import Authenticator, Caller
from gateway_run.settings import Settings
from gateway_run.workers import Workers
from telemetry_events import pb
from telemetry_events.rpc import SERVICE_NAME

logger = logging.getLogger(__name__)

SLOW_STREAM_SECONDS = 30.0


class ByteBudget:
    """An async semaphore counted in bytes: bounds the request bytes held by batches in flight."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._available = capacity
        self._changed = asyncio.Condition()

    async def acquire(self, size: int) -> int:
        size = min(size, self._capacity)  # one message bigger than the budget still gets through, alone
        async with self._changed:
            await self._changed.wait_for(lambda: self._available >= size)
            self._available -= size
        return size

    async def release(self, size: int) -> None:
        async with self._changed:
            self._available += size
            self._changed.notify_all()


@dataclass
class StreamStats:
    """Counts for the one log line each stream ends with."""

    started: float = field(default_factory=time.monotonic)
    caller: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""
    messages: int = 0
    received: int = 0
    published: int = 0
    dead_lettered: int = 0
    failed: int = 0
    rejected: int = 0
    first_error: str = ""
    shutdown: bool = False  # ended by the gateway stopping, not by anything the caller did

    def add(self, result: BatchResult) -> None:
        self.published += result.published
        self.dead_lettered += result.dead_lettered
        self.failed += result.failed
        self.rejected += len(result.rejected)
        if result.first_error and not self.first_error:
            self.first_error = result.first_error

    def log(self, status: grpc.StatusCode, detail: str = "") -> None:
        seconds = time.monotonic() - self.started
        fields: dict[str, Any] = {
            **self.caller,
            "request_id": self.request_id[:256],
            "status": status.name,
            "events_messages": self.messages,
            "events_received": self.received,
            "events_published": self.published,
            "events_dead_lettered": self.dead_lettered,
            "events_failed": self.failed,
            "events_rejected": self.rejected,
            "duration_seconds": round(seconds, 3),
        }
        if detail:
            fields["detail"] = detail[:500]
        if self.first_error:
            fields["first_error"] = self.first_error
        slow = seconds > SLOW_STREAM_SECONDS
        if slow:
            fields["slow"] = True
        if self.shutdown:
            fields["shutdown"] = True
        expected = status == grpc.StatusCode.OK or self.shutdown
        level = logging.WARNING if (slow or self.failed or not expected) else logging.INFO
        logger.log(level, "RecordEvents stream ended", extra=fields)


class _InFlight:
    """The batches of one stream between acceptance and response, in arrival order, at most `limit`."""

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._queue: asyncio.Queue[asyncio.Task[BatchResult] | None] = asyncio.Queue()

    async def reserve(self) -> None:
        await self._slots.acquire()

    def add(self, task: asyncio.Task[BatchResult]) -> None:
        self._queue.put_nowait(task)

    async def next(self) -> asyncio.Task[BatchResult] | None:
        return await self._queue.get()

    def done(self) -> None:
        self._slots.release()

    def close(self) -> None:
        self._queue.put_nowait(None)


class Servicer:
    def __init__(self, settings: Settings, workers: Workers, shutting_down: asyncio.Event) -> None:
        self._settings = settings
        self._workers = workers
        self._authenticator = Authenticator(settings)
        self._shutting_down = shutting_down
        self._budget = ByteBudget(settings.max_inflight_bytes)

    def handlers(self) -> grpc.GenericRpcHandler:
        # No (de)serializers: requests arrive as bytes and are decoded here, responses leave as bytes.
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "RecordEvents": grpc.stream_stream_rpc_method_handler(self.record_events),
                "RecordEvent": grpc.unary_unary_rpc_method_handler(self.record_event),
            },
        )

    async def record_events(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
        stats = StreamStats()
        in_flight = _InFlight(self._settings.publish_concurrency)
        writer = asyncio.create_task(self._write_responses(in_flight, context, stats))
        stop_waiter = asyncio.create_task(self._shutting_down.wait())
        outcome: RequestRejected | None = None
        try:
            try:
                await self._read_requests(context, stop_waiter, in_flight, stats)
                if self._shutting_down.is_set():
                    stats.shutdown = True
                    outcome = RequestRejected(grpc.StatusCode.UNAVAILABLE, "the gateway is shutting down; reconnect")
            except RequestRejected as rejected:
                outcome = rejected
            # Answer every batch already accepted before ending the stream, whatever ends it.
            in_flight.close()
            await writer
        except asyncio.CancelledError:
            stats.log(grpc.StatusCode.CANCELLED)
            raise
        except Exception as error:
            logger.exception("RecordEvents failed unexpectedly")
            outcome = RequestRejected(grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}")
        finally:
            writer.cancel()
            stop_waiter.cancel()
        if outcome is None:
            stats.log(grpc.StatusCode.OK)
            return
        stats.log(outcome.code, outcome.message)
        await context.abort(outcome.code, outcome.message)

    async def _read_requests(
        self,
        context: grpc.aio.ServicerContext,
        stop_waiter: asyncio.Task[Any],
        in_flight: _InFlight,
        stats: StreamStats,
    ) -> None:
        caller: Caller | None = None
        while True:
            read = asyncio.ensure_future(context.read())
            await asyncio.wait((read, stop_waiter), return_when=asyncio.FIRST_COMPLETED)
            if not read.done():
                read.cancel()
                return  # shutting down: stop reading, answer what is in flight
            raw = read.result()
            if raw is grpc.aio.EOF:
                return
            request = decode_events_request(raw)  # its events stay bytes: each is decoded on its own
            kind = request.WhichOneof("payload")
            if kind == "metadata":
                if caller is not None:
                    raise RequestRejected(grpc.StatusCode.INVALID_ARGUMENT, "metadata received more than once")
                stats.request_id = request.metadata.request_id
                caller = self._authenticator.identify(request.metadata, context.invocation_metadata())
                stats.caller = caller.log_fields
            elif kind == "events":
                if caller is None:
                    raise RequestRejected(grpc.StatusCode.INVALID_ARGUMENT, "events received before metadata")
                count = len(request.events.events)
                stats.messages += 1
                stats.received += count
                # Waiting here (for a slot, for budget) stops reading: gRPC flow control then holds the client.
                await in_flight.reserve()
                held = await self._budget.acquire(len(raw))
                in_flight.add(asyncio.create_task(self._process(caller, raw, count, held)))
            else:
                raise RequestRejected(
                    grpc.StatusCode.INVALID_ARGUMENT, "request carries neither metadata nor events (malformed payload)"
                )

    async def _process(self, caller: Caller, raw: bytes, count: int, held: int) -> BatchResult:
        try:
            return await self._workers.run(caller.context, raw, count)
        finally:
            await self._budget.release(held)

    async def _write_responses(
        self, in_flight: _InFlight, context: grpc.aio.ServicerContext, stats: StreamStats
    ) -> None:
        while (task := await in_flight.next()) is not None:
            result = await task
            stats.add(result)
            await context.write(pb.RecordEventsResponse(succeeded_events=result.succeeded).SerializeToString())
            in_flight.done()

    async def record_event(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        started = time.monotonic()
        try:
            request = decode_event_request(raw)  # its event stays bytes: decoded, or refused, with the batch
            caller = self._authenticator.identify(request.metadata, context.invocation_metadata(), unary=True)
            if not request.HasField("event"):
                raise RequestRejected(grpc.StatusCode.INVALID_ARGUMENT, "event is required")
            result = await self._workers.run(caller.context, events_request_bytes([request.event]), 1)
            if result.rejected:
                raise RequestRejected(
                    grpc.StatusCode.INVALID_ARGUMENT, f"event cannot be recorded: {result.rejected[0][1]}"
                )
            if not result.succeeded:
                raise RequestRejected(
                    grpc.StatusCode.UNAVAILABLE, f"event was not published, retry: {result.first_error}"
                )
        except RequestRejected as rejected:
            logger.warning(
                "RecordEvent refused",
                extra={
                    "status": rejected.code.name,
                    "detail": rejected.message[:500],
                    "duration_seconds": round(time.monotonic() - started, 3),
                },
            )
            await context.abort(rejected.code, rejected.message)
            raise  # abort raises; this line only tells readers and type checkers so
        logger.info(
            "RecordEvent published",
            extra={
                **caller.log_fields,
                "request_id": request.metadata.request_id[:256],
                "event_id": result.succeeded[0][:200],
                "duration_seconds": round(time.monotonic() - started, 3),
            },
        )
        return pb.RecordEventResponse().SerializeToString()
