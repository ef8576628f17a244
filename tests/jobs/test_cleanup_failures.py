"""Cleanup when things go wrong: the database fails mid-run, and two runs overlap.

docs/cleanup-and-metrics.md promises: a database failure answers 503 and the chunks committed
before it stay deleted; two runs at once are harmless, the second waits on the first's row locks
and then finds those rows gone.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import functions_framework
import pytest

from telemetry_export.cleanup import DONE, CleanupResult, clean_up
from telemetry_export.settings import CleanupSettings
from telemetry_export.store import cleanup as store

from .conftest import DAY, HOUR

MAIN = str(Path(__file__).resolve().parents[2] / "functions" / "main.py")

# Fails the DELETE that reaches the row labelled 'poison', the way the database itself would.
FAILURES = {
    "an error inside a chunk": "RAISE EXCEPTION USING ERRCODE = 'disk_full', MESSAGE = 'could not extend file'",
    "the connection terminated": "PERFORM pg_terminate_backend(pg_backend_pid())",
}


def _execute(conn, sql: str) -> None:
    conn.cursor().execute(sql)
    conn.commit()


@pytest.fixture
def failing_delete(conn):
    """Installs a trigger that fails deleting the 'poison' row with the chosen failure; removed afterwards."""

    def install(failure: str) -> None:
        _execute(
            conn,
            "CREATE OR REPLACE FUNCTION fail_on_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF convert_from(OLD.payload_pb, 'UTF8') = 'poison' THEN {failure}; END IF; RETURN OLD; END $$",
        )
        _execute(
            conn,
            "CREATE TRIGGER fail_on_poison BEFORE DELETE ON telemetry_events_export_queue"
            " FOR EACH ROW EXECUTE FUNCTION fail_on_poison()",
        )

    yield install
    _execute(conn, "DROP TRIGGER IF EXISTS fail_on_poison ON telemetry_events_export_queue")
    _execute(conn, "DROP FUNCTION IF EXISTS fail_on_poison()")


@pytest.mark.parametrize("failure", FAILURES)
def test_a_database_failure_mid_run_answers_503_and_keeps_the_committed_chunks(
    job_env, conn, queue, failing_delete, caplog, failure
):
    job_env.setenv("TELEMETRY_CLEANUP_CHUNK_SIZE", "2")
    queue.add("exported 30h ago", 4, age=2 * DAY, exported_ago=30 * HOUR)  # chunks 1 and 2
    queue.add("poison", 1, age=2 * DAY, exported_ago=28 * HOUR)  # chunk 3 fails on it
    queue.add("exported 26h ago", 2, age=2 * DAY, exported_ago=26 * HOUR)
    failing_delete(FAILURES[failure])
    caplog.set_level(logging.INFO, logger="telemetry_export.http_jobs")
    client = functions_framework.create_app(target="cleanup_exported_events", source=MAIN).test_client()

    response = client.post("/")

    assert response.status_code == 503
    assert response.get_json()["error"].startswith("database unavailable: ")
    # Chunks 1 and 2 were committed before the failure and stay deleted; chunk 3 was rolled back whole.
    assert queue.labels() == {"poison": 1, "exported 26h ago": 2}
    [line] = [r for r in caplog.records if r.getMessage() == "database unavailable"]
    assert (line.levelname, line.job) == ("ERROR", "cleanup")

    _execute(conn, "DROP TRIGGER fail_on_poison ON telemetry_events_export_queue")
    response = client.post("/")  # the next scheduled run, the database healthy again

    assert response.status_code == 200
    assert response.get_json()["deleted"] == 3
    assert queue.labels() == {}


def test_two_cleanups_at_once_delete_each_row_once_and_the_second_waits_for_the_first(
    connections, conn, queue, monkeypatch
):
    queue.add("exported 30h ago", 2, age=2 * DAY, exported_ago=30 * HOUR)
    queue.add("exported 26h ago", 4, age=2 * DAY, exported_ago=26 * HOUR)
    queue.add("exported 1h ago", 1, age=2 * HOUR, exported_ago=HOUR)
    settings = CleanupSettings(chunk_size=2)
    results: dict[str, CleanupResult] = {}
    errors: list[BaseException] = []
    second_pid: list[int] = []
    real_delete = store.delete_exported
    first_chunk = threading.Event()

    def run(name: str, connection) -> None:
        try:
            results[name] = clean_up(connection, settings)
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)

    def delete_holding_the_first_chunk(cursor, *args, **kwargs):
        chunk = real_delete(cursor, *args, **kwargs)
        if not first_chunk.is_set():
            first_chunk.set()
            # The first run's chunk is deleted but not committed: its row locks are held. Start the
            # second run now and return (commit) only once it waits on those locks.
            second.start()
            wait_for_lock_wait(conn, second_pid)
        return chunk

    monkeypatch.setattr(store, "delete_exported", delete_holding_the_first_chunk)
    with connections.connection() as first_conn, connections.connection() as second_conn:
        cursor = second_conn.cursor()
        cursor.execute("SELECT pg_backend_pid()")
        second_pid.append(cursor.fetchone()[0])
        second_conn.commit()
        second = threading.Thread(target=run, args=("second", second_conn))
        run("first", first_conn)
        second.join(timeout=120)

    assert errors == []
    first, second_result = results["first"], results["second"]
    # The second run picked the same oldest rows, waited for the first's locks, then found them gone.
    assert second_result.deleted == 0
    assert first.deleted == 6
    assert (first.stopped_because, second_result.stopped_because) == (DONE, DONE)
    assert queue.labels() == {"exported 1h ago": 1}


def wait_for_lock_wait(conn, pid_holder: list[int], timeout: float = 60.0) -> None:
    """Returns once the backend in `pid_holder` is waiting on a lock; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    cursor = conn.cursor()
    while time.monotonic() < deadline:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid_holder[0],))
        row = cursor.fetchone()
        conn.commit()
        if row is not None and row[0] == "Lock":
            return
        time.sleep(0.02)
    raise AssertionError("the second cleanup never waited on the first one's row locks")
