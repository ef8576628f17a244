"""The export job: drain the queue to the gateway within a time budget, at least once.

Each batch is claimed in one short transaction (a lease, an attempt counted), decoded and
redacted, streamed to the gateway, and settled in another short transaction by the rules of
`settlement`. While the gateway works on one batch the next is claimed and sent, so neither
side waits on the other. A crashed run's rows come back when their lease expires.

When the gateway refuses a message and ends the stream, the rows it could not take are
suspects: they are sent again, in halves, each group alone on a new stream, until the row
the gateway refuses is alone and can be quarantined with the gateway's reason. Rows outside
today's export scope are set aside as withheld, never sent.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from telemetry_events.export_mode import ExportMode, ExportScope
from telemetry_events.redaction import RedactionPolicy
from telemetry_export import settlement
from telemetry_export.gateway_errors import (
    GatewayBusy,
    GatewayUnavailable,
    MessageRefused,
    MessageTooLarge,
    StreamError,
)
from telemetry_export.gateway_stream import GatewayStream, SentBatch
from telemetry_export.outgoing import Unsendable, outgoing, withheld_reason
from telemetry_export.settings import ExporterSettings
from telemetry_export.settlement import (
    LONE_EVENT_OVERHEAD,
    NOT_ACKNOWLEDGED,
    SentRows,
    Settlement,
    StreamEnded,
)
from telemetry_export.store import export_queue as store
from telemetry_export.store.connection import Connection, transaction

logger = logging.getLogger(__name__)

__all__ = ["MAX_BATCHES_IN_FLIGHT", "NOT_ACKNOWLEDGED", "ExportReport", "run_export"]

# Batches sent and not yet settled: one being answered, one being sent behind it.
MAX_BATCHES_IN_FLIGHT = 2
# Rows refused alone while the gateway accepted no other event: past this many, the gateway,
# not the rows, is the likelier cause, and the run stops instead of taking the backlog apart.
MAX_UNCORROBORATED_REFUSALS = 3


@dataclass
class ExportReport:
    exported: int = 0
    failed: int = 0
    quarantined: int = 0
    withheld: int = 0
    batches: int = 0
    remaining: int | None = None
    stopped_because: str = ""
    duration_s: float = 0.0
    request_id: str = ""

    @property
    def gateway_unavailable(self) -> bool:
        return self.stopped_because.startswith(settlement.GATEWAY_UNAVAILABLE)

    @property
    def instance_refused(self) -> bool:
        return self.stopped_because.startswith(settlement.INSTANCE_REFUSED)

    def summary(self) -> dict[str, Any]:
        return {
            "exported": self.exported,
            "failed": self.failed,
            "quarantined": self.quarantined,
            "withheld": self.withheld,
            "batches": self.batches,
            "remaining": self.remaining,
            "duration_s": round(self.duration_s, 3),
            "stopped_because": self.stopped_because,
        }


@dataclass
class _Batch:
    rows: dict[str, int]  # row ID -> attempts including this one
    sent: SentBatch | None = None
    sent_alone: bool = False
    set_aside: dict[str, str] = field(default_factory=dict)
    lone_sizes: dict[str, int] = field(default_factory=dict)  # rows too big to share a message -> payload bytes
    changed: dict[str, bytes] = field(default_factory=dict)  # rows whose wire bytes differ from the stored ones
    payloads: list[tuple[str, bytes]] = field(default_factory=list)


class _Stop(Exception):
    """Ends the pump; the message is `stopped_because`."""


class _Run:
    def __init__(
        self,
        conn: Connection,
        settings: ExporterSettings,
        policy: RedactionPolicy,
        scope: ExportScope,
        open_channel: Callable[[], grpc.Channel],
        clock: Callable[[], float],
        on_progress: Callable[[ExportReport], None] | None,
    ):
        self.conn = conn
        self.settings = settings
        self.policy = policy
        self.scope = scope
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
        self.suspects: deque[tuple[str, ...]] = deque()  # groups to send again alone
        self.suspect_attempts: dict[str, int] = {}
        self.suspect_payloads: dict[str, tuple[bytes, bool]] = {}  # row -> (wire bytes, differs from stored)
        self.suspect_lone: dict[str, int] = {}
        self.isolated: dict[str, str] = {}  # refused alone, waiting for the gateway to accept another event
        self.last_refusal = ""
        self.accepted_events = False  # the gateway acknowledged at least one event in this run
        self.refusal_progress = False  # the last refusal set a row aside or left suspects to narrow down
        self.stop_override = ""

    def time_left(self) -> float:
        return self.deadline - self.clock()

    def execute(self, max_batches: int | None) -> ExportReport:
        try:
            try:
                self._pump(max_batches)
            except _Stop as stop:
                self.report.stopped_because = str(stop)
            self._finish()
        finally:
            if self.channel is not None:
                self.channel.close()
        with transaction(self.conn) as cursor:
            self.report.remaining = store.exportable_count(cursor)
        self.report.duration_s = self.clock() - self.started
        return self.report

    # --- the pump -------------------------------------------------------------------------------------------------

    def _pump(self, max_batches: int | None) -> None:
        disabled = self.scope.mode is ExportMode.DISABLED
        while True:
            self._settle_answered()
            self._after_stream_end()
            if max_batches is not None and self.report.batches >= max_batches:
                raise _Stop(settlement.BATCH_LIMIT)
            # Stop claiming while there is still time to hear back about what is in flight.
            if self.time_left() < max(2 * self.slowest_batch, 1.0):
                raise _Stop(settlement.TIME_BUDGET)
            if self.in_flight and self.in_flight[-1].sent_alone:
                self._wait_for_oldest()  # a suspect group travels alone: nothing joins its stream
                continue
            if self.suspects:
                # A suspect group travels alone, on a stream of its own, so that a refusal names it.
                if self.in_flight:
                    self._wait_for_oldest()
                    continue
                self._send_suspects(self.suspects.popleft())
                continue
            if len(self.in_flight) >= MAX_BATCHES_IN_FLIGHT:
                self._wait_for_oldest()
                continue
            batch_started = self.clock()
            batch = self._claim()
            if batch is None:
                if self.in_flight:
                    self._wait_for_oldest()
                    continue
                raise _Stop(settlement.EXPORT_DISABLED if disabled else settlement.BACKLOG_EMPTY)
            self.report.batches += 1
            self._send(batch)
            self.slowest_batch = max(self.slowest_batch, self.clock() - batch_started)

    def _send(self, batch: _Batch, alone: bool = False) -> None:
        if batch.payloads:
            stream = self._gateway(fresh=alone)
            batch.sent_alone = alone
            if not stream.finished:
                try:
                    batch.sent = stream.send(batch.payloads, self.settings.max_message_bytes)
                except StreamError:
                    pass  # the stream's error settles the batch (see _after_stream_end)
                if alone:
                    stream.close()
        self.in_flight.append(batch)

    def _send_suspects(self, group: tuple[str, ...]) -> None:
        batch = _Batch({i: self.suspect_attempts[i] for i in group})
        for row_id in group:
            data, changed = self.suspect_payloads[row_id]
            batch.payloads.append((row_id, data))
            if changed:
                batch.changed[row_id] = data
            if row_id in self.suspect_lone:
                batch.lone_sizes[row_id] = self.suspect_lone[row_id]
        self._send(batch, alone=True)

    def _gateway(self, fresh: bool = False) -> GatewayStream:
        """The stream to send on, opened if need be; it may have ended already (refused, say)."""
        if self.stream is not None and fresh:
            stream, self.stream = self.stream, None
            stream.close()
            stream.wait_finished(timeout=5)
        if self.stream is None:
            if self.channel is None:
                self.channel = self.open_channel()
            # The call may outlive the budget by part of the margin: in-flight answers still count.
            call_deadline = self.time_left() + 0.8 * self.settings.deadline_margin_seconds
            self.stream = GatewayStream(self.channel, self.settings.identity, timeout=max(call_deadline, 1.0))
            self.report.request_id = self.report.request_id or self.stream.request_id
            # No event goes out before the instance is accepted: an error until then is about the instance.
            opening = min(self.settings.rpc_timeout_seconds, max(self.time_left(), 1.0))
            if not self.stream.wait_accepted(opening) and not self.stream.finished:
                self.stream.cancel(f"the gateway did not answer the stream's opening within {opening:g} s")
                self.stream.wait_finished(timeout=5)
        return self.stream

    def _wait_for_oldest(self) -> None:
        oldest = self.in_flight[0]
        stream = self.stream
        if oldest.sent is None or stream is None:
            return
        if not stream.wait(oldest.sent, timeout=min(self.time_left(), 1.0)):
            silent = stream.silent_for()
            if silent > self.settings.rpc_timeout_seconds:
                # No answer at all for a whole deadline while messages wait: the gateway is stuck.
                # (A busy gateway keeps answering, or says it is busy: that is not silence.)
                logger.error("gateway did not answer in time", extra={"job": "export", "waited_s": round(silent, 1)})
                stream.cancel(
                    f"no answer from the gateway for {silent:.0f} s while events were outstanding "
                    f"(TELEMETRY_EXPORT_RPC_TIMEOUT={self.settings.rpc_timeout_seconds:g})"
                )
                stream.wait_finished(timeout=5)

    def _claim(self) -> _Batch | None:
        lease = max(self.settings.lease_seconds, self.time_left() + self.settings.deadline_margin_seconds)
        with transaction(self.conn) as cursor:
            rows = store.claim(cursor, self.settings.batch_size, lease, self.owner, skip=self.released)
        if not rows:
            return None
        batch = _Batch({row.id: row.attempts for row in rows})
        withheld: dict[str, str] = {}
        for row in rows:
            if self.scope.mode is ExportMode.DISABLED:  # no need to decode what cannot leave
                withheld[row.id] = withheld_reason(self.scope, "") or ""
                continue
            try:
                wire = outgoing(row.id, row.payload, self.policy)
            except Unsendable as reason:
                batch.set_aside[row.id] = str(reason)
                continue
            held = withheld_reason(self.scope, wire.feature)
            if held is not None:
                withheld[row.id] = held
                continue
            batch.payloads.append((row.id, wire.data))
            if wire.changed:
                batch.changed[row.id] = wire.data
            if len(wire.data) + LONE_EVENT_OVERHEAD > self.settings.max_message_bytes:
                batch.lone_sizes[row.id] = len(wire.data)
        if withheld:
            with transaction(self.conn) as cursor:
                self.report.withheld += store.quarantine(cursor, withheld, self.owner, withheld=True)
            for row_id in withheld:
                del batch.rows[row_id]
        return batch

    # --- settling -------------------------------------------------------------------------------------------------

    def _settle_answered(self) -> None:
        while self.in_flight:
            batch = self.in_flight[0]
            if batch.payloads and (batch.sent is None or not batch.sent.complete):
                return
            self.in_flight.popleft()
            self._apply(batch, None)

    def _after_stream_end(self) -> None:
        """Settles what a finished stream left unanswered, and decides whether the run goes on."""
        stream = self.stream
        if stream is None or not stream.finished:
            return
        self.stream = None
        error = stream.error
        self.refusal_progress = False
        if self.in_flight:
            error = error or StreamEnded("the gateway ended the stream with events unanswered")
            for position, batch in enumerate(list(self.in_flight)):
                self.in_flight.popleft()
                self._apply(batch, error, first_unanswered=position == 0)
        if error is not None:
            self._decide(error)

    def _decide(self, error: StreamError) -> None:
        """After a stream ended with `error`: go on with a new stream, or stop the run (and why)."""
        if isinstance(error, MessageRefused | MessageTooLarge):
            if not self.refusal_progress:
                # Nothing to set aside or narrow down (every message too large, say): not a row's doing.
                raise _Stop(settlement.stop_reason(GatewayUnavailable(error.reason)))
            if len(self.isolated) >= MAX_UNCORROBORATED_REFUSALS:
                raise _Stop(
                    f"{settlement.GATEWAY_UNAVAILABLE}: it refused {len(self.isolated)} events sent alone "
                    f"and accepted none: {error.reason}"
                )
            return  # the suspects (or quarantined rows) go out, or not, on a new stream
        if isinstance(error, GatewayBusy):
            margin = max(2 * self.slowest_batch, 1.0)
            if self.time_left() > error.retry_after + margin:
                logger.info("gateway busy: waiting", extra={"job": "export", "retry_after_s": error.retry_after})
                time.sleep(error.retry_after)
                return
        raise _Stop(settlement.stop_reason(error))

    def _apply(self, batch: _Batch, ending: StreamError | None, first_unanswered: bool = True) -> None:
        sent = batch.sent
        if sent is None and batch.payloads and ending is None:
            ending = GatewayUnavailable("the stream ended before the batch was sent")
        rows = SentRows(
            rows=batch.rows,
            acknowledged=frozenset(sent.acknowledged) if sent else frozenset(),
            unanswered=tuple(tuple(m) for m in sent.unanswered_messages())
            if sent
            else ((tuple(i for i, _ in batch.payloads),) if batch.payloads else ()),
            set_aside=batch.set_aside,
            lone_sizes=batch.lone_sizes,
            sent_alone=batch.sent_alone,
            first_unanswered=first_unanswered,
        )
        outcome = settlement.settle(rows, ending, self.settings.max_attempts)
        self._record(outcome, batch.changed)
        if isinstance(ending, MessageRefused | MessageTooLarge):
            self.refusal_progress |= bool(
                len(outcome.quarantine) > len(batch.set_aside) or outcome.suspects or outcome.isolated
            )
        for row_id in outcome.quarantine:
            self.suspect_attempts.pop(row_id, None)
        if outcome.exported:
            self.accepted_events = True
        if outcome.suspects:
            payloads = dict(batch.payloads)
            if isinstance(ending, MessageRefused | MessageTooLarge):
                self.last_refusal = ending.reason
        for group in outcome.suspects:
            for row_id in group:
                self.suspect_attempts[row_id] = batch.rows[row_id]
                self.suspect_payloads[row_id] = (payloads[row_id], row_id in batch.changed)
                if row_id in batch.lone_sizes:
                    self.suspect_lone[row_id] = batch.lone_sizes[row_id]
            self.suspects.append(group)
        self.isolated.update(outcome.isolated)
        if self.isolated and self.accepted_events:
            self._quarantine_isolated()
        if outcome.accepted_none:
            # A healthy stream that accepts none of a batch means trouble behind the gateway (Pub/Sub,
            # say), not bad rows: no attempt is spent, and the run stops rather than churn the backlog.
            raise _Stop(f"{settlement.GATEWAY_UNAVAILABLE}: {outcome.reason}")

    def _quarantine_isolated(self) -> None:
        isolated, self.isolated = self.isolated, {}
        self._record(Settlement(quarantine=isolated), {})

    def _record(self, outcome: Settlement, changed: dict[str, bytes]) -> None:
        with transaction(self.conn) as cursor:
            exported = store.mark_exported(cursor, list(outcome.exported), changed)
            quarantined = store.quarantine(cursor, outcome.quarantine, self.owner)
            store.release(cursor, outcome.release, self.owner, outcome.reason, refund_attempt=outcome.refund)
        self.report.exported += exported
        self.report.quarantined += quarantined
        self.report.failed += outcome.failed
        if not outcome.again_this_run:
            self.released.extend(outcome.release)
        for row_id in (*outcome.exported, *outcome.quarantine, *outcome.release):
            self.suspect_payloads.pop(row_id, None)
        if outcome.quarantine:
            logger.warning(
                "quarantined rows",
                extra={
                    "job": "export",
                    "rows": len(outcome.quarantine),
                    "first_reason": next(iter(outcome.quarantine.values())),
                },
            )
        if self.on_progress is not None:
            self.on_progress(self.report)

    def _finish(self) -> None:
        """Ends the stream and settles everything still in flight, within the budget's margin."""
        stream = self.stream
        out_of_time = False
        if stream is not None:
            stream.close()
            for batch in self.in_flight:
                if batch.sent is not None:
                    stream.wait(batch.sent, timeout=self.time_left() + self.settings.deadline_margin_seconds / 2)
            unanswered = any(b.payloads and not (b.sent and b.sent.complete) for b in self.in_flight)
            out_of_time = unanswered and not stream.finished
            if out_of_time:
                stream.cancel()
            stream.wait_finished(timeout=5)
        error = stream.error if stream is not None and not out_of_time else None
        for position, batch in enumerate(list(self.in_flight)):
            if not batch.payloads or (batch.sent is not None and batch.sent.complete):
                self._apply_quietly(batch, None)
            elif out_of_time:
                self._apply_quietly(batch, settlement.OutOfTime())
            else:
                error = error or StreamEnded("the gateway ended the stream with events unanswered")
                self._apply_quietly(batch, error, first_unanswered=position == 0)
        self.in_flight.clear()
        if self.isolated and self.accepted_events:
            self._quarantine_isolated()
        for outcome in settlement.abandoned(
            list(self.suspects), self.isolated, self.suspect_attempts, self.last_refusal, self.settings.max_attempts
        ):
            self._record(outcome, {})
        self.suspects.clear()
        self.isolated = {}
        if error is not None and not self.stop_override:
            self.stop_override = settlement.stop_reason(error)
        if self.stop_override and not self.report.stopped_because.startswith(settlement.GATEWAY_FAILURES):
            # The stream broke while the run was ending: say so, unless the run stopped on the gateway already.
            self.report.stopped_because = self.stop_override

    def _apply_quietly(self, batch: _Batch, ending: StreamError | None, first_unanswered: bool = True) -> None:
        """Settles while the run ends: suspects it finds stay unresolved, a total refusal stops nothing more."""
        try:
            self._apply(batch, ending, first_unanswered)
        except _Stop as stop:
            self.stop_override = str(stop)


def run_export(
    conn: Connection,
    settings: ExporterSettings,
    policy: RedactionPolicy,
    open_channel: Callable[[], grpc.Channel],
    clock: Callable[[], float] = time.monotonic,
    max_batches: int | None = None,
    on_progress: Callable[[ExportReport], None] | None = None,
    scope: ExportScope | None = None,
) -> ExportReport:
    """Exports batches until the backlog is empty, the budget runs low or the gateway fails.

    Args:
        open_channel: builds the gateway channel; called once, only when there is something to send.
        max_batches: stop after this many batches (None: as many as the budget allows).
        scope: today's export scope; rows outside it are withheld, not sent (None: export everything).
    """
    return _Run(conn, settings, policy, scope or ExportScope(), open_channel, clock, on_progress).execute(max_batches)
