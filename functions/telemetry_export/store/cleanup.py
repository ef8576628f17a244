"""SQL for cleanup: deleting exported rows past their retention window, and quarantined rows past theirs.

Deletion runs in chunks, one short statement and transaction each, so a run can stop between
chunks (its time budget) and never holds locks on more than one chunk's rows. A chunk picks
the oldest eligible rows through the partial index on `exported_at` (or `quarantined_at`),
by physical address (ctid), and deletes them through a TID scan: no second lookup by primary
key. The outer WHERE repeats the eligibility test, so a row changed since it was picked (by
an export or a quarantine command) is left alone.

Each chunk starts where the previous one ended (`not_before`): deleted index entries stay in
the index until VACUUM, so a scan from the start would step over every row deleted so far,
more of them with each chunk (on a 1M-row queue this saves 10-40 % of the run).

Rows with `quarantined_at` set are governed by the quarantine window alone, even if they also
carry an `exported_at`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from telemetry_export.store.connection import Cursor, DatabaseError, error_field

QUERY_CANCELED = "57014"  # SQLSTATE raised when statement_timeout cancels a statement


@dataclass(frozen=True)
class Cutoffs:
    """A run's fixed eligibility bounds: rows exported (quarantined) strictly before these times go.

    Fixed once per run, from the database's clock, so "nothing left" has one meaning for the
    whole run and the application host's clock plays no part.
    """

    exported_before: datetime
    quarantined_before: datetime


class Chunk(NamedTuple):
    """What one chunk deleted: how many rows, and the latest timestamp among them (None when none)."""

    deleted: int
    last: datetime | None


def cutoffs(cursor: Cursor, retention_seconds: float, quarantine_retention_seconds: float) -> Cutoffs:
    cursor.execute(
        "SELECT now() - make_interval(secs => %s), now() - make_interval(secs => %s)",
        (float(retention_seconds), float(quarantine_retention_seconds)),
    )
    exported_before, quarantined_before = cursor.fetchone()
    return Cutoffs(exported_before, quarantined_before)


def limit_statement_time(cursor: Cursor, seconds: float) -> None:
    """Cancels any statement of the current transaction that runs longer than `seconds`."""
    milliseconds = max(int(seconds * 1000), 1)
    cursor.execute("SELECT set_config('statement_timeout', %s, true)", (str(milliseconds),))


def is_statement_timeout(error: DatabaseError) -> bool:
    return error_field(error, "C") == QUERY_CANCELED


_DELETE_EXPORTED = """
WITH picked AS (
    SELECT ctid FROM telemetry_events_export_queue
    WHERE exported_at < %s AND exported_at >= %s AND quarantined_at IS NULL
    ORDER BY exported_at
    LIMIT %s
), gone AS (
    DELETE FROM telemetry_events_export_queue
    WHERE ctid = ANY(ARRAY(SELECT ctid FROM picked))
      AND exported_at < %s AND quarantined_at IS NULL
    RETURNING exported_at
)
SELECT count(*), max(exported_at) FROM gone
"""

_DELETE_QUARANTINED = """
WITH picked AS (
    SELECT ctid FROM telemetry_events_export_queue
    WHERE quarantined_at < %s AND quarantined_at >= %s
    ORDER BY quarantined_at
    LIMIT %s
), gone AS (
    DELETE FROM telemetry_events_export_queue
    WHERE ctid = ANY(ARRAY(SELECT ctid FROM picked))
      AND quarantined_at < %s
    RETURNING quarantined_at
)
SELECT count(*), max(quarantined_at) FROM gone
"""

# Earlier than any timestamp a row can carry: the first chunk's lower bound.
_BEGINNING = "-infinity"


def delete_exported(cursor: Cursor, before: datetime, limit: int, not_before: datetime | None = None) -> Chunk:
    """Deletes up to `limit` unquarantined rows exported before `before`, oldest first."""
    return _delete(cursor, _DELETE_EXPORTED, before, limit, not_before)


def delete_quarantined(cursor: Cursor, before: datetime, limit: int, not_before: datetime | None = None) -> Chunk:
    """Deletes up to `limit` rows quarantined before `before`, oldest first."""
    return _delete(cursor, _DELETE_QUARANTINED, before, limit, not_before)


def _delete(cursor: Cursor, sql: str, before: datetime, limit: int, not_before: datetime | None) -> Chunk:
    lower = _BEGINNING if not_before is None else not_before
    # pg8000 takes positional parameters only: in order of appearance, the picking query's then the DELETE's.
    cursor.execute(sql, (before, lower, limit, before))
    deleted, last = cursor.fetchone()
    return Chunk(int(deleted), last)


def count_eligible(cursor: Cursor, bounds: Cutoffs) -> tuple[int, int]:
    """(exported rows, quarantined rows) still past their window under `bounds`."""
    cursor.execute(
        "SELECT"
        " (SELECT count(*) FROM telemetry_events_export_queue WHERE exported_at < %s AND quarantined_at IS NULL),"
        " (SELECT count(*) FROM telemetry_events_export_queue WHERE quarantined_at < %s)",
        (bounds.exported_before, bounds.quarantined_before),
    )
    exported, quarantined = cursor.fetchone()
    return int(exported), int(quarantined)
