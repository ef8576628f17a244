"""The cleanup job: deletes exported rows once their retention window has passed, in bounded chunks.

The window exists so admins can see what left their instance; deleting earlier defeats it
(the reference system once did exactly that, because its retention setting never reached the
job). So the window comes from the settings object the caller passes, is fixed to the
database's clock once per run, and is echoed in every run's summary.

Quarantined rows are kept for their own, longer window: they are evidence of a problem and
are listed by the command line until then.

A run deletes oldest first, one chunk per transaction, and stops between chunks when its time
budget would run out: each chunk is also capped by statement_timeout at what is left of the
budget, so a slow database cannot hold the run past it. Whatever is left is picked up by the
next scheduled run. Two runs at once are harmless: one waits for the other's row locks and
then finds those rows gone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from telemetry_export.outcome import JobOutcome
from telemetry_export.settings import CleanupSettings, Settings
from telemetry_export.store import cleanup as store
from telemetry_export.store.connection import Connection, Connections, DatabaseError, transaction

logger = logging.getLogger(__name__)

DONE = "nothing left"
"""stopped_because: nothing eligible was left (as of the run's cutoffs)."""
TIME_BUDGET = "time budget"
"""stopped_because: the time budget ran out; the rest waits for the next run."""


@dataclass(frozen=True)
class CleanupResult:
    """What one run did. `remaining_*` count rows still past their window when the run ended."""

    deleted: int
    deleted_quarantined: int
    remaining_eligible: int
    remaining_eligible_quarantined: int
    stopped_because: str
    duration_s: float
    chunks: int
    retention_seconds: float
    quarantine_retention_seconds: float
    exported_before: datetime
    quarantined_before: datetime

    def summary(self) -> dict[str, Any]:
        """The run's JSON summary: the HTTP response body and the fields of its log line."""
        return {
            "deleted": self.deleted,
            "deleted_quarantined": self.deleted_quarantined,
            "remaining_eligible": self.remaining_eligible,
            "remaining_eligible_quarantined": self.remaining_eligible_quarantined,
            "stopped_because": self.stopped_because,
            "duration_s": round(self.duration_s, 3),
            "chunks": self.chunks,
            "retention_seconds": self.retention_seconds,
            "quarantine_retention_seconds": self.quarantine_retention_seconds,
            "exported_before": self.exported_before.isoformat(),
            "quarantined_before": self.quarantined_before.isoformat(),
        }


ChunkListener = Callable[[int], None]
"""Called after each chunk with the number of rows deleted so far in the run."""


def clean_up(
    conn: Connection,
    settings: CleanupSettings,
    *,
    clock: Callable[[], float] = time.monotonic,
    on_chunk: ChunkListener | None = None,
) -> CleanupResult:
    """Runs one cleanup: exported rows past `settings.retention_seconds`, then quarantined rows past theirs.

    Args:
        conn: a connection outside any transaction; each chunk commits on its own.
        settings: the retention windows, chunk size and time budget.
        clock: monotonic seconds, for the time budget.
        on_chunk: progress callback.

    Returns:
        The run's counts, including what is still eligible when it stopped.

    Raises:
        DatabaseError: the database failed for a reason other than the time budget. Chunks
            committed before the failure stay deleted.
    """
    started = clock()
    with transaction(conn) as cursor:
        bounds = store.cutoffs(cursor, settings.retention_seconds, settings.quarantine_retention_seconds)

    passes = (
        ("exported", store.delete_exported, bounds.exported_before),
        ("quarantined", store.delete_quarantined, bounds.quarantined_before),
    )
    deleted = {"exported": 0, "quarantined": 0}
    chunks = 0
    slowest_chunk = 0.0
    stopped_because = DONE
    for kind, delete, before in passes:
        last: datetime | None = None
        while stopped_because == DONE:
            left = settings.time_budget_seconds - (clock() - started)
            if left <= slowest_chunk:
                # Starting a chunk now would likely end in a cancelled statement: leave it to the next run.
                stopped_because = TIME_BUDGET
                break
            chunk_started = clock()
            try:
                with transaction(conn) as cursor:
                    store.limit_statement_time(cursor, left)
                    chunk = delete(cursor, before, settings.chunk_size, last)
            except DatabaseError as error:
                if not store.is_statement_timeout(error):
                    raise
                stopped_because = TIME_BUDGET
                break
            slowest_chunk = max(slowest_chunk, clock() - chunk_started)
            chunks += 1
            deleted[kind] += chunk.deleted
            last = chunk.last or last
            if on_chunk is not None:
                on_chunk(deleted["exported"] + deleted["quarantined"])
            if chunk.deleted < settings.chunk_size:
                break

    with transaction(conn) as cursor:
        remaining, remaining_quarantined = store.count_eligible(cursor, bounds)
    return CleanupResult(
        deleted=deleted["exported"],
        deleted_quarantined=deleted["quarantined"],
        remaining_eligible=remaining,
        remaining_eligible_quarantined=remaining_quarantined,
        stopped_because=stopped_because,
        duration_s=clock() - started,
        chunks=chunks,
        retention_seconds=settings.retention_seconds,
        quarantine_retention_seconds=settings.quarantine_retention_seconds,
        exported_before=bounds.exported_before,
        quarantined_before=bounds.quarantined_before,
    )


def run_cleanup_job(settings: Settings, connections: Connections, options: dict[str, Any]) -> JobOutcome:
    """One run of the cleanup_exported_events function, with the process' settings."""
    with connections.connection() as conn:
        result = clean_up(conn, settings.cleanup)
    return JobOutcome(result.summary())
