"""A database for a benchmark: the given URL's server, or a throwaway cluster of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pg8000.dbapi

from localdev.postgres import start_cluster
from telemetry_export.migrate import migrate
from telemetry_export.store.connection import Connections, DatabaseSettings, parse_database_url


@contextmanager
def benchmark_database(admin_url: str | None) -> Iterator[str]:
    """Yields the URL of a fresh, migrated database; drops it (or the whole cluster) afterwards."""
    cluster = None
    if admin_url is None:
        cluster = start_cluster()
        admin_url = cluster.admin_url
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = pg8000.dbapi.connect(**parse_database_url(admin_url))
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    url = f"{admin_url.rsplit('/', 1)[0]}/{name}"
    try:
        with Connections(DatabaseSettings(url=url)).connection() as conn:
            migrate(conn)
        yield url
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
        if cluster is not None:
            cluster.destroy()
