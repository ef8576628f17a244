"""Cleanup's time budget at its edges, its summary, and where each chunk starts (found by mutation testing).

test_cleanup_job.py drives the budget with a clock that starts at 0 and budgets far from a chunk's length; these
pin the rule at its boundary (time left equal to the slowest chunk), a budget under a second, a clock that does
not start at 0, and the keyset each chunk starts from (docs/cleanup-and-metrics.md, store/cleanup.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

from telemetry_export.cleanup import DONE, TIME_BUDGET, CleanupResult, clean_up
from telemetry_export.settings import CleanupSettings
from telemetry_export.store import cleanup as store

from .conftest import DAY, HOUR
from .test_cleanup_job import ChunkClock


def test_time_left_equal_to_the_slowest_chunk_does_not_start_another(conn, queue, monkeypatch):
    queue.add("exported 30h ago", 4, age=2 * DAY, exported_ago=30 * HOUR)
    clock = ChunkClock(monkeypatch, chunk_seconds=50)

    result = clean_up(conn, CleanupSettings(chunk_size=2, time_budget_seconds=100), clock=clock)

    # Chunk 1 took 50 s of the 100; the 50 s left would be used up exactly, with nothing for settling.
    assert clock.statement_limits == [100]
    assert (result.chunks, result.deleted, result.stopped_because) == (1, 2, TIME_BUDGET)


def test_a_budget_under_a_second_still_runs_chunks_that_fit(conn, queue, monkeypatch):
    queue.add("exported 30h ago", 3, age=2 * DAY, exported_ago=30 * HOUR)
    clock = ChunkClock(monkeypatch, chunk_seconds=0.1)

    result = clean_up(conn, CleanupSettings(chunk_size=2, time_budget_seconds=0.5), clock=clock)

    # No chunk has run yet, so none is known to be slow: the first starts with all 0.5 s, the second with 0.4.
    assert [round(limit, 3) for limit in clock.statement_limits[:2]] == [0.5, 0.4]
    assert (result.deleted, result.stopped_because) == (3, DONE)


def test_the_duration_is_measured_from_the_runs_start_on_any_clock(conn, queue, monkeypatch):
    queue.add("exported 30h ago", 4, age=2 * DAY, exported_ago=30 * HOUR)
    clock = ChunkClock(monkeypatch, chunk_seconds=40)
    clock.now = 5_000.0  # a monotonic clock's origin is arbitrary

    result = clean_up(conn, CleanupSettings(chunk_size=2, time_budget_seconds=100), clock=clock)

    assert clock.statement_limits == [100, 60]
    assert (result.chunks, result.duration_s) == (2, 80)


def test_the_summary_rounds_the_duration_to_milliseconds():
    at = datetime(2026, 1, 1, tzinfo=UTC)
    result = CleanupResult(1, 0, 0, 0, DONE, 1.23456, 1, DAY, 30 * DAY, at, at)
    assert result.summary()["duration_s"] == 1.235


def test_each_chunk_starts_where_the_previous_one_ended(conn, queue, monkeypatch):
    # The keyset (store/cleanup.py): deleted index entries stay until VACUUM, so a scan from the start would step
    # over every row deleted so far. Each pass starts from the beginning; each later chunk from the last deleted.
    for hours in (30, 29, 28, 27, 26):
        queue.add(f"exported {hours}h ago", 1, age=2 * DAY, exported_ago=hours * HOUR)
    queue.add("quarantined 31 days ago", 1, age=40 * DAY, quarantined_ago=31 * DAY)
    calls: list[tuple[str, datetime | None, datetime | None]] = []
    for name in ("delete_exported", "delete_quarantined"):
        real = getattr(store, name)

        def spy(cursor, before, limit, not_before=None, real=real, name=name):
            chunk = real(cursor, before, limit, not_before)
            calls.append((name, not_before, chunk.last))
            return chunk

        monkeypatch.setattr(store, name, spy)

    result = clean_up(conn, CleanupSettings(chunk_size=2))

    assert (result.deleted, result.deleted_quarantined) == (5, 1)
    exported = [call for call in calls if call[0] == "delete_exported"]
    assert len(exported) == 3 and exported[0][1] is None
    assert [not_before for _, not_before, _ in exported[1:]] == [last for _, _, last in exported[:-1]]
    assert all(last is not None for _, _, last in exported)
    assert [(name, not_before) for name, not_before, _ in calls if name == "delete_quarantined"] == [
        ("delete_quarantined", None)
    ]
