"""SQL for the queue's health figures: one statement, one snapshot, three index-bounded scans.

Row states (see the 0001 migration):
  exportable   exported_at IS NULL AND quarantined_at IS NULL (the backlog; includes rows in flight)
  in flight    exportable AND leased_until > now (claimed by a running export)
  quarantined  quarantined_at IS NOT NULL AND NOT withheld (never part of the backlog: poison rows must not inflate it)
  withheld     quarantined_at IS NOT NULL AND withheld (outside the export scope when the exporter met them; 0002)
  exported     exported_at IS NOT NULL (kept until cleanup's retention window passes)

Each aggregate reads only the rows of its state through that state's partial index, so the
cost follows the size of the state, and the figures all describe the same instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from telemetry_export.store.connection import Cursor


@dataclass(frozen=True)
class QueueCounts:
    """Raw figures as of `measured_at` (the database's clock, or the time asked for)."""

    measured_at: datetime
    backlog: int
    oldest_exportable: datetime | None
    in_flight: int
    quarantined: int
    exported_retained: int
    exported_last_hour: int
    withheld: int = 0


_FIGURES = """
WITH clock AS (SELECT coalesce(%s::timestamptz, now()) AS at)
SELECT clock.at, exportable.backlog, exportable.oldest, exportable.in_flight,
       quarantined.rows, exported.retained, exported.last_hour, quarantined.withheld
FROM clock
CROSS JOIN LATERAL (
    SELECT count(*) AS backlog, min(timestamp) AS oldest,
           count(*) FILTER (WHERE leased_until > clock.at) AS in_flight
    FROM telemetry_events_export_queue
    WHERE exported_at IS NULL AND quarantined_at IS NULL
) AS exportable
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE NOT withheld) AS rows, count(*) FILTER (WHERE withheld) AS withheld
    FROM telemetry_events_export_queue WHERE quarantined_at IS NOT NULL
) AS quarantined
CROSS JOIN LATERAL (
    SELECT count(*) AS retained,
           count(*) FILTER (WHERE exported_at > clock.at - interval '1 hour') AS last_hour
    FROM telemetry_events_export_queue
    WHERE exported_at IS NOT NULL
) AS exported
"""


def queue_counts(cursor: Cursor, at: datetime | None = None) -> QueueCounts:
    """The queue's figures now, or as of `at` (which pins the clock, for reproducible figures)."""
    cursor.execute(_FIGURES, (at,))
    measured_at, backlog, oldest, in_flight, quarantined, retained, last_hour, withheld = cursor.fetchone()
    return QueueCounts(
        measured_at=measured_at,
        backlog=int(backlog),
        oldest_exportable=oldest,
        in_flight=int(in_flight),
        quarantined=int(quarantined),
        exported_retained=int(retained),
        exported_last_hour=int(last_hour),
        withheld=int(withheld),
    )
