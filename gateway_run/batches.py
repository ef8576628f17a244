"""One events message, start to finish: decode, prepare each event, publish, and wait for the outcome.

This runs inside a worker (a process of the pool, or a thread when TELEMETRY_GATEWAY_WORKERS=0),
never on the event loop: rendering and publishing are CPU work that would stall every stream.
Each worker holds its own publisher and policy, set up once by `init_worker`.

Outcomes per event, as the servicer reports them:
- published to the events topic                      -> succeeded (acknowledged)
- unpublishable, instance caller, dead letter written -> succeeded, so the instance stops resending
- unpublishable, managed service                      -> rejected: reported failed, not dead-lettered
- any publish error or timeout                        -> failed: left out, the exporter resends
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from gateway_run.publisher import Sink, make_sink
from gateway_run.pubsub_messages import Outgoing, StreamContext, Unpublishable, prepare
from gateway_run.settings import Settings
from telemetry_events import logs, pb
from telemetry_events.redaction import RedactionPolicy, policy_from

logger = logging.getLogger(__name__)

SLOW_PUBLISH_SECONDS = 10.0
_PUBLISHED = "published"
_DEAD_LETTERED = "dead-lettered"


@dataclass
class BatchResult:
    """What became of one events message; travels back from the worker, so plain data only."""

    received: int = 0
    succeeded: list[str] = field(default_factory=list)
    published: int = 0
    dead_lettered: int = 0
    failed: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (event id, reason): managed services
    first_error: str = ""
    seconds: float = 0.0


@dataclass
class _Worker:
    settings: Settings
    sink: Sink
    policy: RedactionPolicy


_worker: _Worker | None = None
_init_lock = threading.Lock()


def init_worker(settings: Settings, in_child_process: bool) -> None:
    """Builds this worker's publisher and policy, once per process."""
    global _worker
    with _init_lock:
        if _worker is None:
            if in_child_process:
                # The parent orchestrates shutdown (drain, then stop the pool): a SIGTERM sent to
                # the whole process group must not kill a worker in the middle of a batch.
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                logs.configure(settings.log_level)
            _worker = _Worker(settings, make_sink(settings), policy_from(settings.allowlist))


def probe_worker(settings: Settings, linger: float) -> int:
    """The pool's start-up probe: the worker is set up (init_worker ran); returns its process ID."""
    init_worker(settings, in_child_process=True)
    time.sleep(linger)
    return os.getpid()


def stop_worker() -> None:
    """Flushes and stops this worker's publisher (for the in-process mode; processes just exit)."""
    global _worker
    with _init_lock:
        if _worker is not None:
            _worker.sink.stop()
            _worker = None


def process_batch(context: StreamContext, raw_request: bytes) -> BatchResult:
    """Publishes every event of a serialized RecordEventsRequest and reports each one's outcome."""
    worker = _worker
    if worker is None:
        raise RuntimeError("init_worker was not called in this worker")
    started = time.monotonic()
    settings = worker.settings
    events = pb.RecordEventsRequest.FromString(raw_request).events.events
    result = BatchResult(received=len(events))
    # Per event, in order: (event id, its publish or dead-letter future or None, what it is).
    outcomes: list[tuple[str, Future[Any] | None, str]] = []
    unpublishable: list[Unpublishable] = []

    for event in events:
        prepared = prepare(event, context, worker.policy, settings.max_message_bytes)
        if isinstance(prepared, Outgoing):
            outcomes.append((prepared.event_id, _publish(worker.sink, settings.topic, prepared), _PUBLISHED))
            continue
        unpublishable.append(prepared)
        if context.managed:
            result.rejected.append((prepared.event_id, f"{prepared.reason}: {prepared.detail}"))
        elif settings.deadletter_topic:
            future = _publish(worker.sink, settings.deadletter_topic, prepared.dead_letter)
            outcomes.append((prepared.event_id, future, _DEAD_LETTERED))
        else:
            # Nowhere to keep it but the log: acknowledged so that it stops coming back, never silently.
            excerpt = prepared.dead_letter.data[:8192].decode("utf-8", "ignore")
            logger.warning(
                "event cannot be published and no dead-letter topic is set",
                extra={**_describe(prepared), "request_id": context.request_id, "dead_letter": excerpt},
            )
            outcomes.append((prepared.event_id, None, _DEAD_LETTERED))
    if unpublishable and (context.managed or settings.deadletter_topic):
        logger.info(
            "events cannot be published",
            extra={
                "request_id": context.request_id,
                "source": context.source,
                "count": len(unpublishable),
                "outcome": "rejected" if context.managed else "dead-lettered",
                "examples": [_describe(item) for item in unpublishable[:5]],
            },
        )

    # The client's own retry deadline ends first; this only bounds the wait should it not.
    futures.wait([f for _, f, _ in outcomes if f is not None], timeout=settings.publish_timeout + 5)
    for event_id, outcome, kind in outcomes:
        error = _error_of(outcome)
        if error is None:
            result.succeeded.append(event_id)
            if kind == _PUBLISHED:
                result.published += 1
            else:
                result.dead_lettered += 1
        else:
            result.failed += 1
            result.first_error = result.first_error or f"{type(error).__name__}: {error}"[:500]

    result.seconds = time.monotonic() - started
    if result.seconds > SLOW_PUBLISH_SECONDS:
        logger.warning(
            "slow publish",
            extra={"request_id": context.request_id, "events": result.received, "seconds": round(result.seconds, 3)},
        )
    return result


def _error_of(future: Future[Any] | None) -> BaseException | None:
    if future is None:
        return None
    if not future.done():
        future.cancel()
        return TimeoutError("publish did not finish in time")
    try:
        return future.exception()
    except futures.CancelledError as cancelled:
        return cancelled


def _publish(sink: Sink, topic: str, message: Outgoing) -> Future[Any]:
    try:
        return sink.publish(topic, message.data, message.attributes)
    except Exception as error:  # noqa: BLE001 - e.g. a stopped client: reported as a failed publish
        failed: Future[Any] = Future()
        failed.set_exception(error)
        return failed


def _describe(item: Unpublishable) -> dict[str, Any]:
    return {
        "event_id": item.event_id[:200],
        "reason": item.reason,
        "detail": item.detail[:500],
        "size": item.size,
    }
