"""SQL for schema migrations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from telemetry_export.store.connection import Connection, Cursor, transaction

# Any constant both runs agree on; it names this project's migration lock.
_MIGRATION_LOCK_KEY = 0x7E1E_0E7A


@contextmanager
def migration_lock(conn: Connection) -> Iterator[Cursor]:
    """A transaction that holds the migration lock until it commits."""
    with transaction(conn) as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS telemetry_export_schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        yield cursor


def applied_versions(conn: Connection) -> set[int]:
    cursor = conn.cursor()
    cursor.execute("SELECT version FROM telemetry_export_schema_migrations")
    return {row[0] for row in cursor.fetchall()}


def apply_migration(conn: Connection, version: int, name: str, sql: str) -> None:
    cursor = conn.cursor()
    cursor.execute(sql)
    cursor.execute("INSERT INTO telemetry_export_schema_migrations (version, name) VALUES (%s, %s)", (version, name))
