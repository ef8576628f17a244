"""One events message, start to finish: decode and prepare each event, publish whole requests, settle.

Two halves, on two sides of a process boundary:
- `prepare_batch` runs in a worker (a process of the pool, or a thread when
  TELEMETRY_GATEWAY_WORKERS=0), never on the event loop: decoding, redacting and rendering are
  CPU work that would stall every stream. Each event is decoded on its own, so one that cannot
  be decoded costs only itself. The messages leave the worker as serialized PublishRequests
  (up to 1,000 messages or 10 MB each), for the events topic and for the dead-letter topic.
- `publish_batch` runs on the gateway's event loop: it sends those requests through the
  publisher, several at once, and `settle` turns their outcomes into the batch's answer.

Outcomes per event, as `settle` decides them:
- in a request Pub/Sub accepted (a message ID for it)     -> succeeded (acknowledged), published
- unpublishable, instance caller, its dead letter accepted  -> succeeded, so the instance stops resending
- unpublishable, instance caller, no dead-letter topic      -> logged at WARNING, succeeded
- unpublishable, managed service                            -> rejected: reported failed, not dead-lettered
- in a request that failed or timed out (either topic)      -> failed: left out, the caller resends;
                                                               never dead-lettered for it
An event is acknowledged by the ID it was sent with; one whose ID cannot be read (its bytes are
garbage) is dead-lettered and counted, but there is nothing to acknowledge it by.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway_run.decoding import UndecodableEvent, decode_event, decode_events_request
from gateway_run.publisher import Publisher
from gateway_run.pubsub_messages import (
    Outgoing,
    PublishRequestBytes,
    PublishRequests,
    StreamContext,
    Unpublishable,
    prepare,
    undecodable,
)
from gateway_run.settings import Settings
from telemetry_events import logs
from telemetry_events.redaction import RedactionPolicy, policy_from

logger = logging.getLogger(__name__)

SLOW_PUBLISH_SECONDS = 10.0
# The place of an event acknowledged without a request: dead letter logged for want of a topic.
LOGGED = -1


@dataclass
class BatchResult:
    """What became of one events message."""

    received: int = 0
    succeeded: list[str] = field(default_factory=list)
    published: int = 0
    dead_lettered: int = 0
    failed: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (event id, reason): managed services
    first_error: str = ""
    seconds: float = 0.0


@dataclass
class PreparedBatch:
    """A batch ready to publish; travels back from the worker, so plain data only.

    `slots` holds, per event in the order received that is to be acknowledged or counted,
    (its acknowledgement ID, the index of its request in `requests`, or LOGGED).
    """

    received: int
    requests: list[PublishRequestBytes] = field(default_factory=list)
    dead_letter_requests: set[int] = field(default_factory=set)
    slots: list[tuple[str, int]] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class _Worker:
    settings: Settings
    policy: RedactionPolicy


_worker: _Worker | None = None
_init_lock = threading.Lock()


def init_worker(settings: Settings, in_child_process: bool) -> None:
    """Sets up this worker's settings and policy, once per process."""
    global _worker
    with _init_lock:
        if _worker is None:
            if in_child_process:
                # The parent orchestrates shutdown (drain, then stop the pool): a SIGTERM sent to
                # the whole process group must not kill a worker in the middle of a batch.
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                logs.configure(settings.log_level)
            _worker = _Worker(settings, policy_from(settings.allowlist))


def probe_worker(settings: Settings, linger: float) -> int:
    """The pool's start-up probe: the worker is set up (init_worker ran); returns its process ID."""
    init_worker(settings, in_child_process=True)
    time.sleep(linger)
    return os.getpid()


def prepare_batch(context: StreamContext, raw_request: bytes) -> PreparedBatch:
    """Decodes and prepares every event of a serialized RecordEventsRequest (events) into PublishRequests."""
    worker = _worker
    if worker is None:
        raise RuntimeError("init_worker was not called in this worker")
    started = time.monotonic()
    settings = worker.settings
    raw_events = decode_events_request(raw_request).events.events
    batch = PreparedBatch(received=len(raw_events))
    events = PublishRequests(settings.topic)
    dead_letters = PublishRequests(settings.deadletter_topic) if settings.deadletter_topic else None
    # Per event, in order: (acknowledgement ID, its request's number within its topic, dead letter?).
    places: list[tuple[str, int, bool]] = []
    unpublishable: list[Unpublishable] = []

    for raw_event in raw_events:
        try:
            prepared: Outgoing | Unpublishable = prepare(
                decode_event(raw_event), context, worker.policy, settings.max_message_bytes
            )
        except UndecodableEvent as error:
            prepared = undecodable(len(raw_event), error, context)
        if isinstance(prepared, Outgoing):
            places.append((prepared.event_id, events.add(prepared), False))
            continue
        unpublishable.append(prepared)
        if context.managed:
            batch.rejected.append((prepared.event_id, f"{prepared.reason}: {prepared.detail}"))
        elif dead_letters is not None:
            places.append((prepared.event_id, dead_letters.add(prepared.dead_letter), True))
        else:
            # Nowhere to keep it but the log: acknowledged so that it stops coming back, never silently.
            excerpt = prepared.dead_letter.data[:8192].decode("utf-8", "ignore")
            logger.warning(
                "event cannot be published and no dead-letter topic is set",
                extra={**_describe(prepared), "request_id": context.request_id, "dead_letter": excerpt},
            )
            places.append((prepared.event_id, LOGGED, False))
    if unpublishable and (context.managed or dead_letters is not None):
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

    batch.requests = events.requests()
    first_dead_letter = len(batch.requests)
    if dead_letters is not None:
        batch.requests.extend(dead_letters.requests())
        batch.dead_letter_requests = set(range(first_dead_letter, len(batch.requests)))
    batch.slots = [
        (event_id, number if number == LOGGED or not dead else first_dead_letter + number)
        for event_id, number, dead in places
    ]
    batch.seconds = time.monotonic() - started
    return batch


async def publish_batch(prepared: PreparedBatch, publisher: Publisher, context: StreamContext) -> BatchResult:
    """Sends every request of `prepared` at once (the publisher bounds how many fly) and settles the batch."""
    started = time.monotonic()
    outcomes = await asyncio.gather(*(publisher.publish(r) for r in prepared.requests), return_exceptions=True)
    result = settle(prepared, outcomes)
    result.seconds = prepared.seconds + (time.monotonic() - started)
    if result.seconds > SLOW_PUBLISH_SECONDS:
        logger.warning(
            "slow publish",
            extra={"request_id": context.request_id, "events": result.received, "seconds": round(result.seconds, 3)},
        )
    return result


def settle(prepared: PreparedBatch, outcomes: Sequence[Sequence[str] | BaseException]) -> BatchResult:
    """Each event's outcome from its request's: acknowledged only with a message ID from Pub/Sub.

    `outcomes[i]` is request i's message IDs, or the error that ended it.
    """
    result = BatchResult(received=prepared.received, rejected=list(prepared.rejected))
    errors = [_request_error(prepared.requests[i], outcome) for i, outcome in enumerate(outcomes)]
    positions = [0] * len(outcomes)
    for event_id, index in prepared.slots:
        if index == LOGGED:
            ok = True
        else:
            position = positions[index]
            positions[index] += 1
            ok = errors[index] is None and bool(outcomes[index][position])  # type: ignore[index]
        if ok:
            if event_id:
                result.succeeded.append(event_id)
            if index == LOGGED or index in prepared.dead_letter_requests:
                result.dead_lettered += 1
            else:
                result.published += 1
        else:
            result.failed += 1
            result.first_error = result.first_error or (errors[index] or "Pub/Sub returned no message ID")
    return result


def _request_error(request: PublishRequestBytes, outcome: Sequence[str] | BaseException) -> str | None:
    if isinstance(outcome, BaseException):
        return f"{type(outcome).__name__}: {outcome}"[:500]
    if len(outcome) != request.messages:
        return f"Pub/Sub answered {len(outcome)} message IDs for {request.messages} messages"
    return None


def _describe(item: Unpublishable) -> dict[str, Any]:
    return {
        "event_id": item.event_id[:200],
        "reason": item.reason,
        "detail": item.detail[:500],
        "size": item.size,
    }
