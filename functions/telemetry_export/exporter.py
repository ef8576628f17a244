"""The export job: drain the queue to the gateway within a time budget, at least once.

Each batch is claimed in one short transaction (a lease, an attempt counted), decoded and
redacted, streamed to the gateway, and settled in another short transaction: acknowledged
IDs are marked exported, the rest released with their error, rows that can never be sent
quarantined. While the gateway works on one batch the next is claimed and sent, so neither
side waits on the other. A crashed run's rows come back when their lease expires.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from telemetry_events.redaction import RedactionPolicy
from telemetry_export.gateway_stream import GatewayStream, SentBatch, StreamBroken
from telemetry_export.outgoing import Unsendable, outgoing_bytes
from telemetry_export.settings import ExporterSettings
from telemetry_export.store import export_queue as store
from telemetry_export.store.connection import Connection, transaction

logger = logging.getLogger(__name__)

# Batches sent and not yet settled: one being answered, one being sent behind it.
MAX_BATCHES_IN_FLIGHT = 2
NOT_ACKNOWLEDGED = "not acknowledged by the gateway"
# gRPC's own words when a message is over a receive (or send) limit: "... larger than max (N vs. LIMIT)".
_SIZE_LIMIT = re.compile(r"larger than max \((\d+) vs\. (\d+)\)")
# Bytes a RecordEventsRequest holding one event adds to it: two tags and two length prefixes.
_LONE_EVENT_OVERHEAD = 12


@dataclass
class ExportReport:
    exported: int = 0
    failed: int = 0
    quarantined: int = 0
    batches: int = 0
    remaining: int | None = None
    stopped_because: str = ""
    duration_s: float = 0.0
    request_id: str = ""

    @property
    def gateway_unavailable(self) -> bool:
        return self.stopped_because.startswith("gateway unavailable")

    def summary(self) -> dict[str, Any]:
        return {
            "exported": self.exported,
            "failed": self.failed,
            "quarantined": self.quarantined,
            "batches": self.batches,
            "remaining": self.remaining,
            "duration_s": round(self.duration_s, 3),
            "stopped_because": self.stopped_because,
        }


@dataclass
class _Batch:
    rows: dict[str, int]  # row ID -> attempts including this one
    sent: SentBatch | None = None
    sent_at: float = 0.0
    quarantine: dict[str, str] = field(default_factory=dict)
    alone: dict[str, int] = field(default_factory=dict)  # rows too big to share a message -> payload bytes


class _Run:
    def __init__(
        self,
        conn: Connection,
        settings: ExporterSettings,
        policy: RedactionPolicy,
        open_channel: Callable[[], grpc.Channel],
        clock: Callable[[], float],
        on_progress: Callable[[ExportReport], None] | None,
    ):
        self.conn = conn
        self.settings = settings
        self.policy = policy
        self.open_channel = open_channel
        self.clock = clock
        self.on_progress = on_progress
        self.owner = str(uuid.uuid4())
        self.report = ExportReport()
        self.started = clock()
        self.deadline = self.started + settings.time_budget_seconds
        self.channel: grpc.Channel | None = None
        self.stream: GatewayStream | None = None
        self.in_flight: deque[_Batch] = deque()
        self.slowest_batch = 0.0
        self.released: list[str] = []  # tried in this run and refused: left for the next run
        self.refused_everything = ""

    def time_left(self) -> float:
        return self.deadline - self.clock()

    def execute(self, max_batches: int | None) -> ExportReport:
        try:
            self._pump(max_batches)
            self._finish()
        finally:
            if self.channel is not None:
                self.channel.close()
        with transaction(self.conn) as cursor:
            self.report.remaining = store.exportable_count(cursor)
        self.report.duration_s = self.clock() - self.started
        return self.report

    def _pump(self, max_batches: int | None) -> None:
        while True:
            self._settle_answered()
            if self.stream is not None and self.stream.broken:
                self.report.stopped_because = f"gateway unavailable: {self.stream.describe_error()}"
                return
            if self.refused_everything:
                self.report.stopped_because = f"gateway unavailable: {self.refused_everything}"
                return
            if max_batches is not None and self.report.batches >= max_batches:
                self.report.stopped_because = "batch limit reached"
                return
            # Stop claiming while there is still time to hear back about what is in flight.
            if self.time_left() < max(2 * self.slowest_batch, 1.0):
                self.report.stopped_because = "time budget"
                return
            if len(self.in_flight) >= MAX_BATCHES_IN_FLIGHT:
                self._wait_for_oldest()
                continue
            batch_started = self.clock()
            batch, payloads = self._claim()
            if batch is None:
                self.report.stopped_because = "backlog empty"
                return
            self.report.batches += 1
            if payloads:
                try:
                    batch.sent = self._gateway().send(payloads, self.settings.max_message_bytes)
                except StreamBroken as error:
                    self._settle(batch, reason=str(error), refund=True, sent=False)
                    continue  # reported at the top of the loop
                batch.sent_at = self.clock()
            self.in_flight.append(batch)
            self.slowest_batch = max(self.slowest_batch, self.clock() - batch_started)

    def _wait_for_oldest(self) -> None:
        oldest = self.in_flight[0]
        if oldest.sent is None or self.stream is None:
            return
        if not self.stream.wait(oldest.sent, timeout=min(self.time_left(), 1.0)):
            if self.clock() - oldest.sent_at > self.settings.rpc_timeout_seconds:
                # No answer within the per-batch deadline: treat the gateway as stuck.
                logger.error(
                    "gateway did not answer in time",
                    extra={"job": "export", "waited_s": round(self.clock() - oldest.sent_at, 1)},
                )
                self.stream.cancel()

    def _gateway(self) -> GatewayStream:
        if self.stream is None:
            self.channel = self.open_channel()
            # The call may outlive the budget by part of the margin: in-flight answers still count.
            call_deadline = self.time_left() + 0.8 * self.settings.deadline_margin_seconds
            self.stream = GatewayStream(self.channel, self.settings.identity, timeout=max(call_deadline, 1.0))
            self.report.request_id = self.stream.request_id
        return self.stream

    def _claim(self) -> tuple[_Batch | None, list[tuple[str, bytes]]]:
        lease = max(self.settings.lease_seconds, self.time_left() + self.settings.deadline_margin_seconds)
        with transaction(self.conn) as cursor:
            rows = store.claim(cursor, self.settings.batch_size, lease, self.owner, skip=self.released)
        if not rows:
            return None, []
        batch = _Batch({row.id: row.attempts for row in rows})
        payloads = []
        for row in rows:
            try:
                payload = outgoing_bytes(row.id, row.payload, self.policy)
            except Unsendable as reason:
                batch.quarantine[row.id] = str(reason)
                continue
            payloads.append((row.id, payload))
            if len(payload) + _LONE_EVENT_OVERHEAD > self.settings.max_message_bytes:
                batch.alone[row.id] = len(payload)
        return batch, payloads

    def _settle_answered(self) -> None:
        while self.in_flight:
            batch = self.in_flight[0]
            if batch.sent is not None and not batch.sent.complete:
                return
            self._settle(self.in_flight.popleft(), reason=NOT_ACKNOWLEDGED, refund=False)

    def _finish(self) -> None:
        """Ends the stream and settles everything still in flight, within the budget's margin."""
        stream = self.stream
        out_of_time = False
        if stream is not None:
            stream.close()
            for batch in self.in_flight:
                if batch.sent is not None:
                    stream.wait(batch.sent, timeout=self.time_left() + self.settings.deadline_margin_seconds / 2)
            unanswered = not all(b.sent is None or b.sent.complete for b in self.in_flight)
            out_of_time = unanswered and not stream.broken
            if out_of_time:
                stream.cancel()
            stream.wait_finished(timeout=5)
        for batch in self.in_flight:
            if batch.sent is None or batch.sent.complete:
                self._settle(batch, reason=NOT_ACKNOWLEDGED, refund=False)
            elif out_of_time:
                self._settle(batch, reason="unanswered when the time budget ran out", refund=True)
            else:
                if stream is not None:
                    self._set_aside_too_large(batch, stream)
                self._settle(batch, reason=stream.describe_error() if stream else "stream ended", refund=True)
        self.in_flight.clear()
        if stream is not None and stream.broken and not out_of_time and not self.report.gateway_unavailable:
            self.report.stopped_because = f"gateway unavailable: {stream.describe_error()}"

    def _set_aside_too_large(self, batch: _Batch, stream: GatewayStream) -> None:
        """Quarantines the events the stream died of when it ended RESOURCE_EXHAUSTED.

        Such an event travelled alone in a message over the gateway's receive limit (or the
        channel's send limit): resent, it would end every future stream the same way, and the
        rows behind it would never leave. The gateway names the limit; without it, every
        unacknowledged lone event of the batch is suspect.
        """
        error = stream.error
        if error is None or not batch.alone:
            return
        code = error.code() if hasattr(error, "code") else None
        if code != grpc.StatusCode.RESOURCE_EXHAUSTED:
            return
        details = (error.details() if hasattr(error, "details") else "") or ""
        match = _SIZE_LIMIT.search(details)
        limit = int(match.group(2)) if match else 0
        acknowledged = batch.sent.acknowledged if batch.sent is not None else set()
        for row_id, size in batch.alone.items():
            if row_id not in acknowledged and size + _LONE_EVENT_OVERHEAD > limit:
                batch.quarantine[row_id] = (
                    f"event of {size} bytes is larger than the gateway accepts ({details[:200]}): it can never be sent"
                )

    def _settle(self, batch: _Batch, reason: str, refund: bool, sent: bool = True) -> None:
        acknowledged = batch.sent.acknowledged if batch.sent is not None and sent else set()
        unacknowledged = [i for i in batch.rows if i not in acknowledged and i not in batch.quarantine]
        if batch.sent is not None and sent and batch.sent.complete and not acknowledged:
            # A healthy stream that accepts none of a batch means trouble behind the gateway (Pub/Sub,
            # say), not bad rows: no attempt is spent, and the run stops rather than churn the backlog.
            refund = True
            reason = f"gateway acknowledged none of {len(batch.sent.ids)} events"
            self.refused_everything = reason
        # A row refused while the gateway answered others had a fair attempt; past the limit it is set aside.
        exhausted = (
            {}
            if refund
            else {
                i: f"{reason} after {batch.rows[i]} attempts"
                for i in unacknowledged
                if batch.rows[i] >= self.settings.max_attempts
            }
        )
        quarantine = {**batch.quarantine, **exhausted}
        release = [i for i in unacknowledged if i not in exhausted]
        with transaction(self.conn) as cursor:
            exported = store.mark_exported(cursor, list(acknowledged))
            quarantined = store.quarantine(cursor, quarantine, self.owner)
            store.release(cursor, release, self.owner, reason, refund_attempt=refund)
        self.report.exported += exported
        self.report.quarantined += quarantined
        self.report.failed += len(release)
        self.released.extend(release)
        if quarantine:
            logger.warning(
                "quarantined rows",
                extra={"job": "export", "rows": len(quarantine), "first_reason": next(iter(quarantine.values()))},
            )
        if self.on_progress is not None:
            self.on_progress(self.report)


def run_export(
    conn: Connection,
    settings: ExporterSettings,
    policy: RedactionPolicy,
    open_channel: Callable[[], grpc.Channel],
    clock: Callable[[], float] = time.monotonic,
    max_batches: int | None = None,
    on_progress: Callable[[ExportReport], None] | None = None,
) -> ExportReport:
    """Exports batches until the backlog is empty, the budget runs low or the gateway fails.

    Args:
        open_channel: builds the gateway channel; called once, only when there is something to send.
        max_batches: stop after this many batches (None: as many as the budget allows).
    """
    return _Run(conn, settings, policy, open_channel, clock, on_progress).execute(max_batches)
