"""The gRPC entry points: the RecordEvents protocol and the unary RecordEvent, over raw bytes.

RecordEvents reads ahead: up to TELEMETRY_GATEWAY_PUBLISH_CONCURRENCY events messages of a stream
are accepted at once (and no more bytes than TELEMETRY_GATEWAY_MAX_INFLIGHT_BYTES across all
streams), while a writer task sends the responses back in the order the messages came. The
workers are shared between streams in turn (scheduling.py). A stream that breaks the protocol is
first drained (its accepted batches are answered, so the caller keeps their acknowledgements)
and then ended with the status of its violation. On SIGTERM, streams stop reading, drain the
same way and end with UNAVAILABLE: the exporter reconnects, to another instance.

Every wait of a stream is bounded (docs/gateway.md, "Limits at the edge"): its metadata must
come within TELEMETRY_GATEWAY_METADATA_TIMEOUT of its start; once nothing of it is in flight, its
next message within TELEMETRY_GATEWAY_STREAM_IDLE_TIMEOUT of the last message or response; and
an accepted message must start within TELEMETRY_GATEWAY_MAX_QUEUE_WAIT, or the stream answers
what started and ends "gateway busy" (RESOURCE_EXHAUSTED with a RetryInfo).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from gateway_run.batches import BatchResult
from gateway_run.decoding import decode
from gateway_run.errors import GatewayBusy, RequestRejected
from gateway_run.identity import Authenticator, Caller
from gateway_run.scheduling import Lane, NotStarted, QueueWaitExceeded, Scheduler, capacity_of
from gateway_run.settings import Settings
from gateway_run.workers import Workers
from telemetry_events import pb
from telemetry_events.rpc import SERVICE_NAME

logger = logging.getLogger(__name__)

SLOW_STREAM_SECONDS = 30.0
# How long the log line of a stream whose caller went away waits for its started batches to finish.
SETTLE_SECONDS_AFTER_CANCEL = 60.0


class ByteBudget:
    """An async semaphore counted in bytes: bounds the request bytes held by batches in flight."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._available = capacity
        self._changed = asyncio.Condition()

    async def acquire(self, size: int, timeout: float) -> int:
        """Takes `size` bytes (at most the whole budget); raises TimeoutError after `timeout` seconds without."""
        size = min(size, self._capacity)  # one message bigger than the budget still gets through, alone
        async with self._changed:
            if self._available < size:
                await asyncio.wait_for(self._changed.wait_for(lambda: self._available >= size), max(timeout, 0.0))
            self._available -= size
        return size

    async def release(self, size: int) -> None:
        async with self._changed:
            self._available += size
            self._changed.notify_all()


@dataclass
class StreamStats:
    """Counts for the one log line each stream ends with.

    Outcomes are counted when each batch finishes, not when its response is written: a stream
    whose caller went away still logs what became of what it sent.
    """

    started: float = field(default_factory=time.monotonic)
    caller: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""
    messages: int = 0
    received: int = 0
    published: int = 0
    dead_lettered: int = 0
    failed: int = 0
    rejected: int = 0
    not_started: int = 0  # withdrawn before a worker took them: not published, not acknowledged
    longest_queue_wait: float = 0.0
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
            "events_not_started": self.not_started,
            "longest_queue_wait_seconds": round(self.longest_queue_wait, 3),
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
        level = logging.WARNING if (slow or self.failed or self.not_started or not expected) else logging.INFO
        logger.log(level, "RecordEvents stream ended", extra=fields)


@dataclass(eq=False)
class _CutShort:
    """A stream whose call ended before it could answer everything: its line waits for its batches."""

    stats: StreamStats
    lane: Lane
    batches: dict[asyncio.Task[BatchResult | None], int]  # unanswered batches and their event counts
    detail: str
    logged: bool = False

    def log(self) -> None:
        if self.logged:
            return
        self.logged = True
        unfinished = sum(count for task, count in self.batches.items() if not task.done())
        if unfinished:
            # Not acknowledged (the caller is gone): the exporter sends them again.
            self.stats.failed += unfinished
            self.stats.first_error = self.stats.first_error or "the gateway stopped before the batch finished"
        self.stats.longest_queue_wait = self.lane.longest_wait
        self.stats.log(grpc.StatusCode.CANCELLED, self.detail)


class _InFlight:
    """The batches of one stream between acceptance and response, in arrival order, at most `limit`."""

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._queue: asyncio.Queue[asyncio.Task[BatchResult | None] | None] = asyncio.Queue()
        self.unanswered: dict[asyncio.Task[BatchResult | None], int] = {}  # and their event counts
        self.empty = asyncio.Event()
        self.empty.set()
        self.last_activity = time.monotonic()  # the last message accepted or response written

    async def reserve(self) -> None:
        await self._slots.acquire()

    def add(self, task: asyncio.Task[BatchResult | None], events: int) -> None:
        self.unanswered[task] = events
        self.empty.clear()
        self.last_activity = time.monotonic()
        self._queue.put_nowait(task)

    async def next(self) -> asyncio.Task[BatchResult | None] | None:
        return await self._queue.get()

    def done(self, task: asyncio.Task[BatchResult | None]) -> None:
        self.unanswered.pop(task, None)
        self.last_activity = time.monotonic()
        if not self.unanswered:
            self.empty.set()
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
        self._scheduler = Scheduler(capacity_of(settings))
        self._settling: set[asyncio.Task[None]] = set()  # log lines of streams whose caller went away
        self._cut_short: set[_CutShort] = set()

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
        lane = self._scheduler.lane()
        in_flight = _InFlight(self._settings.publish_concurrency)
        writer = asyncio.create_task(self._write_responses(in_flight, context))
        stop_waiter = asyncio.create_task(self._shutting_down.wait())
        outcome: RequestRejected | None = None
        try:
            try:
                await self._read_requests(context, stop_waiter, lane, in_flight, stats)
                if self._shutting_down.is_set():
                    stats.shutdown = True
                    outcome = RequestRejected(grpc.StatusCode.UNAVAILABLE, "the gateway is shutting down; reconnect")
            except RequestRejected as rejected:
                outcome = rejected
            if isinstance(outcome, GatewayBusy):
                lane.close()
            # Answer every batch already accepted (and started) before ending the stream, whatever ends it.
            in_flight.close()
            await writer
            if stats.not_started and outcome is None:
                # A message ran out of time while the stream drained: its response is missing, so no OK.
                outcome = self._busy()
        except asyncio.CancelledError:
            # The caller cancelled, its deadline passed or its connection ended (or it sent a message over
            # gRPC's own hard limit): nothing can be answered. What has not started never will; the log
            # line waits for what did, so that it counts what was published.
            lane.close()
            stats.shutdown = self._shutting_down.is_set()
            self._log_when_settled(stats, lane, in_flight, self._cancel_detail(context))
            raise
        except Exception as error:
            logger.exception("RecordEvents failed unexpectedly")
            lane.close()
            outcome = RequestRejected(grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}")
        finally:
            writer.cancel()
            stop_waiter.cancel()
        stats.longest_queue_wait = lane.longest_wait
        if outcome is None:
            stats.log(grpc.StatusCode.OK)
            return
        stats.log(outcome.code, outcome.message)
        await _abort(context, outcome)

    async def _read_requests(
        self,
        context: grpc.aio.ServicerContext,
        stop_waiter: asyncio.Task[Any],
        lane: Lane,
        in_flight: _InFlight,
        stats: StreamStats,
    ) -> None:
        caller: Caller | None = None
        while True:
            if caller is not None:
                # A message is read only once it has a slot: until then gRPC flow control holds the client.
                if not await self._wait_for_slot(in_flight, stop_waiter, lane):
                    return  # shutting down: stop reading, answer what is in flight
            raw = await self._next_message(context, stop_waiter, lane, in_flight, caller is not None)
            if raw is None:
                return  # the client is done sending, or the gateway is shutting down
            if len(raw) > self._settings.max_receive_bytes:
                # gRPC's own limit is higher (server.py), so that this refusal is ours to log truthfully.
                raise RequestRejected(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"Received message larger than max ({len(raw)} vs. {self._settings.max_receive_bytes}): "
                    "send fewer events per message",
                )
            request = decode(raw, pb.RecordEventsRequest)
            kind = request.WhichOneof("payload")
            if kind == "metadata":
                if caller is not None:
                    raise RequestRejected(grpc.StatusCode.INVALID_ARGUMENT, "metadata received more than once")
                stats.request_id = request.metadata.request_id
                caller = self._authenticator.identify(request.metadata, context.invocation_metadata())
                stats.caller = caller.log_fields
                in_flight.last_activity = time.monotonic()
            elif kind == "events":
                if caller is None:
                    raise RequestRejected(grpc.StatusCode.INVALID_ARGUMENT, "events received before metadata")
                count = len(request.events.events)
                stats.messages += 1
                stats.received += count
                deadline = asyncio.get_running_loop().time() + self._settings.max_queue_wait
                held = await self._hold_bytes(len(raw), deadline, lane, stats, count)
                in_flight.add(
                    asyncio.create_task(self._process(lane, caller, raw, count, held, deadline, stats)), count
                )
            else:
                raise RequestRejected(
                    grpc.StatusCode.INVALID_ARGUMENT, "request carries neither metadata nor events (malformed payload)"
                )

    async def _wait_for_slot(self, in_flight: _InFlight, stop_waiter: asyncio.Task[Any], lane: Lane) -> bool:
        """Waits for one of the stream's slots; False when the gateway started shutting down first."""
        slot = asyncio.ensure_future(in_flight.reserve())
        closed = asyncio.ensure_future(lane.closed.wait())
        try:
            await asyncio.wait((slot, stop_waiter, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            if not slot.done():
                slot.cancel()
        if lane.closed.is_set():
            raise self._busy()
        return slot.done() and not slot.cancelled()

    async def _next_message(
        self,
        context: grpc.aio.ServicerContext,
        stop_waiter: asyncio.Task[Any],
        lane: Lane,
        in_flight: _InFlight,
        identified: bool,
    ) -> bytes | None:
        """The next request's bytes; None at the end of the client's input or when shutting down.

        Raises RequestRejected when the metadata or the next message is overdue, GatewayBusy when
        a message of this stream could not start in time.
        """
        settings = self._settings
        limit = settings.stream_idle_timeout if identified else settings.metadata_timeout
        read = asyncio.ensure_future(context.read())
        closed = asyncio.ensure_future(lane.closed.wait())
        try:
            while True:
                waiters: set[asyncio.Future[Any]] = {read, stop_waiter, closed}
                drained: asyncio.Future[Any] | None = None
                timeout: float | None = None
                if identified and not in_flight.empty.is_set():
                    # Not idle while the gateway owes responses: the idle clock starts at the last one.
                    drained = asyncio.ensure_future(in_flight.empty.wait())
                    waiters.add(drained)
                else:
                    timeout = max(limit - (time.monotonic() - in_flight.last_activity), 0.0)
                try:
                    await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if drained is not None:
                        drained.cancel()
                if read.done():
                    raw = read.result()
                    return None if raw is grpc.aio.EOF else raw
                if closed.done():
                    raise self._busy()
                if stop_waiter.done():
                    return None
                if timeout is None or time.monotonic() - in_flight.last_activity < limit:
                    continue
                if not identified:
                    raise RequestRejected(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"no metadata within {limit:g} s of the stream's start "
                        "(TELEMETRY_GATEWAY_METADATA_TIMEOUT): send it first",
                    )
                raise RequestRejected(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"stream idle for {limit:g} s (TELEMETRY_GATEWAY_STREAM_IDLE_TIMEOUT): closed; "
                    "open a new stream to send more",
                )
        finally:
            closed.cancel()
            if not read.done():
                read.cancel()

    async def _hold_bytes(self, size: int, deadline: float, lane: Lane, stats: StreamStats, count: int) -> int:
        """Takes the message's share of the in-flight byte budget before its deadline, or ends the stream busy."""
        try:
            return await self._budget.acquire(size, deadline - asyncio.get_running_loop().time())
        except TimeoutError:
            stats.not_started += count
            lane.close()
            raise self._busy("an events message (waiting for in-flight bytes)") from None

    async def _process(
        self, lane: Lane, caller: Caller, raw: bytes, count: int, held: int, deadline: float, stats: StreamStats
    ) -> BatchResult | None:
        """The batch's outcome, or None when it never started (and so was not published)."""
        try:
            result = await lane.run(lambda: self._workers.run(caller.context, raw, count), deadline)
        except NotStarted:
            stats.not_started += count
            return None
        finally:
            await self._budget.release(held)
        stats.add(result)
        return result

    async def _write_responses(self, in_flight: _InFlight, context: grpc.aio.ServicerContext) -> None:
        answering = True
        while (task := await in_flight.next()) is not None:
            # Shielded: should this writer be cancelled, the batch still finishes and is counted.
            result = await asyncio.shield(task)
            # Messages of a stream start in order, so those that started come first: the responses
            # stop at the first one that did not, and nothing after it is acknowledged.
            answering = answering and result is not None
            if answering and result is not None:
                await context.write(pb.RecordEventsResponse(succeeded_events=result.succeeded).SerializeToString())
            in_flight.done(task)

    def _busy(self, what: str = "an events message") -> GatewayBusy:
        wait = self._settings.max_queue_wait
        delay = self._scheduler.retry_delay()
        return GatewayBusy(
            f"{what} could not start within {wait:g} s (TELEMETRY_GATEWAY_MAX_QUEUE_WAIT); what was not answered "
            f"was not published; retry in {delay:g} s",
            delay,
        )

    def _cancel_detail(self, context: grpc.aio.ServicerContext) -> str:
        if self._shutting_down.is_set():
            return "the gateway stopped before the stream had drained: what was not answered is resent"
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            return "the client's deadline passed"
        return (
            "the client cancelled or its connection ended (or a message was over gRPC's hard limit of "
            f"{hard_receive_limit(self._settings)} bytes, answered RESOURCE_EXHAUSTED by gRPC itself)"
        )

    async def settle(self, timeout: float) -> None:
        """On the way out: waits up to `timeout` seconds for the batches of streams cut short, then logs
        each such stream's line, counting a batch still unfinished as not acknowledged."""
        tasks = [task for cut in self._cut_short for task in cut.batches]
        if tasks:
            await asyncio.wait(tasks, timeout=max(timeout, 0.01))
        for cut in list(self._cut_short):
            cut.log()

    def _log_when_settled(self, stats: StreamStats, lane: Lane, in_flight: _InFlight, detail: str) -> None:
        cut = _CutShort(stats, lane, dict(in_flight.unanswered), detail)
        self._cut_short.add(cut)

        async def log_when_settled() -> None:
            if cut.batches:
                await asyncio.wait(list(cut.batches), timeout=SETTLE_SECONDS_AFTER_CANCEL)
            cut.log()
            self._cut_short.discard(cut)

        task = asyncio.get_running_loop().create_task(log_when_settled())
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def record_event(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        started = time.monotonic()
        try:
            request = decode(raw, pb.RecordEventRequest)
            caller = self._authenticator.identify(request.metadata, context.invocation_metadata(), unary=True)
            if not request.HasField("event"):
                raise RequestRejected(grpc.StatusCode.INVALID_ARGUMENT, "event is required")
            batch = pb.RecordEventsRequest(events=pb.RecordEventsRequest.EventsPayload(events=[request.event]))
            lane = self._scheduler.lane()
            deadline = asyncio.get_running_loop().time() + self._settings.max_queue_wait
            try:
                result = await lane.run(
                    lambda: self._workers.run(caller.context, batch.SerializeToString(), 1), deadline
                )
            except QueueWaitExceeded:
                raise self._busy("the event") from None
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
            await _abort(context, rejected)
            raise  # abort raises; this line only tells readers and type checkers so
        logger.info(
            "RecordEvent published",
            extra={
                **caller.log_fields,
                "request_id": request.metadata.request_id[:256],
                "event_id": request.event.id[:200],
                "duration_seconds": round(time.monotonic() - started, 3),
            },
        )
        return pb.RecordEventResponse().SerializeToString()


def hard_receive_limit(settings: Settings) -> int:
    """gRPC's own receive limit: above the gateway's, so that a message over the gateway's limit reaches
    the servicer, which refuses it itself and logs the refusal. Only one over twice the limit is cut by gRPC."""
    return 2 * settings.max_receive_bytes


async def _abort(context: grpc.aio.ServicerContext, rejected: RequestRejected) -> None:
    if isinstance(rejected, GatewayBusy):
        # The status travels twice, as gRPC's code and details and as a google.rpc.Status with its
        # RetryInfo in the grpc-status-details-bin trailer, which clients read with grpcio-status.
        retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=int(rejected.retry_delay)))
        status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=rejected.message)
        status.details.add().Pack(retry)
        await context.abort_with_status(rpc_status.to_status(status))
    else:
        await context.abort(rejected.code, rejected.message)
