"""Migrations: versioned, idempotent, and safe when two run at once."""

from __future__ import annotations

import threading
from importlib import resources

from telemetry_export.migrate import migrate
from telemetry_export.store import schema as schema_store
from telemetry_export.store.connection import Connections, DatabaseSettings

# Written down, not asked of the code under test: a new migration adds its name here.
MIGRATIONS = ("0001_export_queue_and_event_logs", "0002_withheld_rows")


def _tables(conn) -> set[str]:
    cursor = conn.cursor()
    cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row[0] for row in cursor.fetchall()}


def test_a_fresh_database_gets_every_migration_and_a_second_run_is_a_no_op(postgres_server):
    name = postgres_server.create_database("migrations_fresh")
    try:
        with Connections(DatabaseSettings(url=postgres_server.url_for(name))).connection() as conn:
            first = migrate(conn)
            second = migrate(conn)
            assert first.applied == MIGRATIONS and first.already_applied == 0
            assert second.applied == () and second.already_applied == len(MIGRATIONS)
            assert {"telemetry_events_export_queue", "event_logs", "telemetry_export_schema_migrations"} <= _tables(
                conn
            )
            cursor = conn.cursor()
            cursor.execute("SELECT version, name FROM telemetry_export_schema_migrations ORDER BY version")
            assert [tuple(row) for row in cursor.fetchall()] == [
                (1, "export_queue_and_event_logs"),
                (2, "withheld_rows"),
            ]
    finally:
        postgres_server.drop_database(name)


def test_the_migration_files_are_the_ones_written_down():
    files = sorted(
        entry.name for entry in resources.files("telemetry_export").joinpath("migrations").iterdir() if entry.is_file()
    )
    assert files == [f"{name}.sql" for name in MIGRATIONS]


def test_a_database_an_older_version_migrated_gets_only_the_newer_migrations(postgres_server):
    name = postgres_server.create_database("migrations_older")
    first_sql = resources.files("telemetry_export").joinpath("migrations", f"{MIGRATIONS[0]}.sql").read_text()
    try:
        with Connections(DatabaseSettings(url=postgres_server.url_for(name))).connection() as conn:
            # What the version that shipped only the first migration left behind.
            with schema_store.migration_lock(conn):
                schema_store.apply_migration(conn, 1, "export_queue_and_event_logs", first_sql)
            result = migrate(conn)
            assert result.applied == MIGRATIONS[1:] and result.already_applied == 1
    finally:
        postgres_server.drop_database(name)


def test_two_migrations_at_once_both_succeed_and_apply_once(postgres_server):
    name = postgres_server.create_database("migrations_concurrent")
    url = postgres_server.url_for(name)
    results, errors = [], []
    barrier = threading.Barrier(2)

    def run():
        try:
            with Connections(DatabaseSettings(url=url)).connection() as conn:
                barrier.wait()
                results.append(migrate(conn))
        except Exception as error:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert sorted(r.applied for r in results) == [(), MIGRATIONS]
    finally:
        postgres_server.drop_database(name)


def test_the_indexes_serve_claims_backlog_and_cleanup(conn):
    cursor = conn.cursor()
    cursor.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'telemetry_events_export_queue' ORDER BY 1"
    )
    indexes = dict(cursor.fetchall())
    assert (
        '("timestamp") WHERE ((exported_at IS NULL) AND (quarantined_at IS NULL))'
        in indexes["telemetry_events_export_queue_exportable"]
    )
    assert "(exported_at) WHERE (exported_at IS NOT NULL)" in indexes["telemetry_events_export_queue_exported"]
