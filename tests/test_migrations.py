"""Migrations: versioned, idempotent, and safe when two run at once."""

from __future__ import annotations

import threading

from telemetry_export.migrate import available_migrations, migrate
from telemetry_export.store.connection import Connections, DatabaseSettings


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
            assert first.applied == tuple(f"{m.version:04d}_{m.name}" for m in available_migrations())
            assert second.applied == () and second.already_applied == len(available_migrations())
            assert {"telemetry_events_export_queue", "event_logs", "telemetry_export_schema_migrations"} <= _tables(
                conn
            )
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
        assert sorted(len(r.applied) for r in results) == [0, len(available_migrations())]
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
