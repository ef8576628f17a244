"""Versioned schema migrations, applied in order, each once.

Migrations are the numbered `.sql` files in `migrations/`. A transaction-scoped advisory lock
serialises concurrent runs: the second waits, then finds nothing left to apply.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

from telemetry_export.store import schema as schema_store
from telemetry_export.store.connection import Connection

logger = logging.getLogger(__name__)

_FILENAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@dataclass(frozen=True)
class MigrationResult:
    applied: tuple[str, ...]
    already_applied: int


def available_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("telemetry_export").joinpath("migrations").iterdir():
        match = _FILENAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a version number: {versions}")
    return found


def migrate(conn: Connection) -> MigrationResult:
    """Applies every migration not yet recorded, in one transaction."""
    migrations = available_migrations()
    with schema_store.migration_lock(conn):
        done = schema_store.applied_versions(conn)
        pending = [m for m in migrations if m.version not in done]
        for migration in pending:
            schema_store.apply_migration(conn, migration.version, migration.name, migration.sql)
            logger.info("applied migration", extra={"version": migration.version, "migration": migration.name})
    return MigrationResult(tuple(f"{m.version:04d}_{m.name}" for m in pending), len(migrations) - len(pending))
