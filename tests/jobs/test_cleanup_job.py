"""Cleanup against a real Postgres: retention windows honoured, chunks bounded, the time budget kept."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from telemetry_export.cleanup import DONE, TIME_BUDGET, clean_up, run_cleanup_job
from telemetry_export.settings import CleanupSettings, Settings
from telemetry_export.store import cleanup as store

from .conftest import DAY, HOUR

MINUTE = 60.0


def test_rows_exported_an_hour_ago_survive_a_24_hour_window_and_rows_exported_25_hours_ago_do_not(conn, queue):
    queue.add("exported 1h ago", 2, age=2 * HOUR, exported_ago=1 * HOUR)
    queue.add("exported 23h59m ago", age=DAY, exported_ago=DAY - MINUTE)
    queue.add("exported 24h01m ago", age=DAY + HOUR, exported_ago=DAY + MINUTE)
    queue.add("exported 25h ago", 3, age=26 * HOUR, exported_ago=25 * HOUR)
    queue.add("waiting for 3 days", age=3 * DAY)
    queue.add("in flight", age=3 * DAY, leased_for=5 * MINUTE)

    result = clean_up(conn, CleanupSettings())

    assert queue.labels() == {"exported 1h ago": 2, "exported 23h59m ago": 1, "waiting for 3 days": 1, "in flight": 1}
    assert (result.deleted, result.deleted_quarantined) == (4, 0)
    assert (result.remaining_eligible, result.remaining_eligible_quarantined) == (0, 0)
    assert result.stopped_because == DONE
    assert result.retention_seconds == DAY
    assert abs(datetime.now(UTC) - timedelta(days=1) - result.exported_before) < timedelta(minutes=1)


def test_the_retention_window_reaches_the_job_from_the_environment(connections, conn, queue, database_url):
    queue.add("exported 1h ago", age=2 * HOUR, exported_ago=HOUR)
    queue.add("exported 3h ago", age=4 * HOUR, exported_ago=3 * HOUR)
    queue.add("exported 25h ago", age=26 * HOUR, exported_ago=25 * HOUR)
    settings = Settings.from_env({"DATABASE_URL": database_url, "TELEMETRY_CLEANUP_RETENTION": "2h"})

    outcome = run_cleanup_job(settings, connections, {})

    assert queue.labels() == {"exported 1h ago": 1}
    assert outcome.summary["deleted"] == 2
    assert outcome.summary["retention_seconds"] == 2 * HOUR
    assert not outcome.unavailable


def test_a_zero_retention_window_deletes_every_exported_row_but_nothing_else(conn, queue):
    queue.add("just exported", age=MINUTE, exported_ago=1)
    queue.add("waiting", age=MINUTE)

    result = clean_up(conn, CleanupSettings(retention_seconds=0))

    assert queue.labels() == {"waiting": 1}
    assert result.deleted == 1


def test_quarantined_rows_are_kept_for_their_own_window(conn, queue):
    queue.add("quarantined 2 days ago", 2, age=3 * DAY, quarantined_ago=2 * DAY)
    queue.add("quarantined 29 days ago", age=31 * DAY, quarantined_ago=29 * DAY)
    queue.add("quarantined 31 days ago", 3, age=32 * DAY, quarantined_ago=31 * DAY)
    # Quarantine governs a row that also carries an export time: it is kept as long as quarantined rows are.
    queue.add("exported 25h ago, quarantined 2 days ago", age=3 * DAY, exported_ago=25 * HOUR, quarantined_ago=2 * DAY)

    result = clean_up(conn, CleanupSettings())

    assert queue.labels() == {
        "quarantined 2 days ago": 2,
        "quarantined 29 days ago": 1,
        "exported 25h ago, quarantined 2 days ago": 1,
    }
    assert (result.deleted, result.deleted_quarantined) == (0, 3)
    assert result.quarantine_retention_seconds == 30 * DAY


def test_the_quarantine_window_is_a_setting_of_its_own(conn, queue):
    queue.add("quarantined 2 days ago", age=3 * DAY, quarantined_ago=2 * DAY)
    queue.add("quarantined 2 hours ago", age=3 * HOUR, quarantined_ago=2 * HOUR)

    result = clean_up(conn, CleanupSettings(quarantine_retention_seconds=DAY))

    assert queue.labels() == {"quarantined 2 hours ago": 1}
    assert result.deleted_quarantined == 1


def test_deletes_in_chunks_of_the_configured_size_until_nothing_is_left(conn, queue):
    queue.add("old export", 10, age=2 * DAY, exported_ago=30 * HOUR)
    queue.add("old quarantine", 4, age=40 * DAY, quarantined_ago=31 * DAY)
    seen: list[int] = []

    result = clean_up(conn, CleanupSettings(chunk_size=3), on_chunk=seen.append)

    assert queue.labels() == {}
    # Exported: 3 + 3 + 3 + 1; quarantined: 3 + 1. A short chunk ends its pass.
    assert seen == [3, 6, 9, 10, 13, 14]
    assert result.chunks == 6
    assert result.summary() | {"duration_s": 0, "exported_before": "", "quarantined_before": ""} == {
        "deleted": 10,
        "deleted_quarantined": 4,
        "remaining_eligible": 0,
        "remaining_eligible_quarantined": 0,
        "stopped_because": "nothing left",
        "duration_s": 0,
        "chunks": 6,
        "retention_seconds": DAY,
        "quarantine_retention_seconds": 30 * DAY,
        "exported_before": "",
        "quarantined_before": "",
    }


class ChunkClock:
    """A monotonic clock that moves only while a chunk's DELETE runs: each one takes `chunk_seconds`.

    Wraps the store's delete statements, so the budget rule is driven by the chunks the job
    actually runs, not by how often it happens to read the clock.
    """

    def __init__(self, monkeypatch, chunk_seconds: float):
        self.now = 0.0
        self.statement_limits: list[float] = []
        for name in ("delete_exported", "delete_quarantined"):
            real = getattr(store, name)
            monkeypatch.setattr(store, name, self._taking(real, chunk_seconds))
        real_limit = store.limit_statement_time

        def limit(cursor, seconds):
            self.statement_limits.append(seconds)
            real_limit(cursor, seconds)

        monkeypatch.setattr(store, "limit_statement_time", limit)

    def _taking(self, delete, seconds):
        def timed(*args, **kwargs):
            chunk = delete(*args, **kwargs)
            self.now += seconds
            return chunk

        return timed

    def __call__(self) -> float:
        return self.now


def test_no_chunk_is_started_with_less_time_left_than_the_slowest_chunk_took(conn, queue, monkeypatch):
    queue.add("exported 30h ago", 4, age=2 * DAY, exported_ago=30 * HOUR)
    queue.add("exported 25h ago", 3, age=2 * DAY, exported_ago=25 * HOUR)
    clock = ChunkClock(monkeypatch, chunk_seconds=40)

    result = clean_up(conn, CleanupSettings(chunk_size=2, time_budget_seconds=100), clock=clock)

    # Chunk 1 ran from 0 to 40 s, chunk 2 from 40 to 80 s. 20 s were left, less than the 40 s a chunk
    # takes: a third chunk would be cancelled by its statement timeout, so it is not started.
    assert clock.statement_limits == [100, 60]
    assert (result.chunks, result.deleted, result.stopped_because) == (2, 4, TIME_BUDGET)
    assert queue.labels() == {"exported 25h ago": 3}  # oldest first
    assert (result.remaining_eligible, result.duration_s) == (3, 80)


def test_a_run_with_time_for_its_slowest_chunk_starts_it(conn, queue, monkeypatch):
    queue.add("exported 30h ago", 4, age=2 * DAY, exported_ago=30 * HOUR)
    queue.add("quarantined 31 days ago", 1, age=40 * DAY, quarantined_ago=31 * DAY)
    clock = ChunkClock(monkeypatch, chunk_seconds=20)

    result = clean_up(conn, CleanupSettings(chunk_size=2, time_budget_seconds=61), clock=clock)

    # 61, 41 and 21 s left before chunks 1-3, each more than the 20 s a chunk takes; 1 s before a fourth.
    assert clock.statement_limits == [61, 41, 21]
    assert (result.deleted, result.deleted_quarantined, result.stopped_because) == (4, 0, TIME_BUDGET)
    assert queue.labels() == {"quarantined 31 days ago": 1}


def test_a_chunk_that_outlives_the_budget_is_cancelled_and_the_run_ends_cleanly(conn, queue, connections):
    queue.add("exported 25h ago", 3, age=2 * DAY, exported_ago=25 * HOUR)
    with connections.connection() as other:
        locker = other.cursor()
        locker.execute("SELECT id FROM telemetry_events_export_queue FOR UPDATE")  # the DELETE must wait for these
        # Were the chunk not cancelled, it would wait for these locks; they are let go after a minute, far past
        # the 1 s budget, so the DELETE would then go through and the assertions below would fail, not hang.
        release = threading.Timer(60, other.rollback)
        release.start()

        result = clean_up(conn, CleanupSettings(time_budget_seconds=1.0))

        release.cancel()
        release.join()
        other.rollback()
    assert result.stopped_because == TIME_BUDGET
    assert (result.deleted, result.remaining_eligible) == (0, 3)  # the chunk was cancelled and rolled back
    # The connection is still usable: the next run deletes what this one could not.
    assert clean_up(conn, CleanupSettings()).deleted == 3
    assert queue.labels() == {}


def test_an_empty_queue_is_a_quick_no_op(conn, queue):
    result = clean_up(conn, CleanupSettings())

    assert (result.deleted, result.deleted_quarantined, result.chunks) == (0, 0, 2)
    assert result.stopped_because == DONE
