"""Fixtures on real services: a Postgres server with a fresh database per test module, and a
session-wide Pub/Sub emulator.

TEST_DATABASE_URL (an admin connection URL) reuses a running server; otherwise a throwaway
cluster is started for the session and removed at its end.
"""

from __future__ import annotations

import io
import os
import re
import sys
import uuid
from collections.abc import Iterator

import pg8000.dbapi
import pytest

from localdev.postgres import PostgresUnavailable, start_cluster
from localdev.pubsub_emulator import EmulatorUnavailable, PubSubEmulator, start_emulator
from telemetry_export.cli.main import main
from telemetry_export.migrate import migrate
from telemetry_export.settings import load_settings
from telemetry_export.store.connection import Connection, Connections, DatabaseSettings, parse_database_url


class PostgresServer:
    def __init__(self, admin_url: str, cluster=None):
        self.admin_url = admin_url
        self.cluster = cluster  # None when the server is not ours to restart

    def url_for(self, database: str) -> str:
        base = self.admin_url.rsplit("/", 1)[0]
        return f"{base}/{database}"

    def admin(self) -> Connection:
        conn = pg8000.dbapi.connect(**parse_database_url(self.admin_url))
        conn.autocommit = True
        return conn

    def create_database(self, hint: str) -> str:
        name = re.sub(r"[^a-z0-9_]", "_", hint.lower())[-40:] + "_" + uuid.uuid4().hex[:8]
        conn = self.admin()
        try:
            conn.cursor().execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return name

    def drop_database(self, name: str) -> None:
        conn = self.admin()
        try:
            conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            conn.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield PostgresServer(url)
        return
    try:
        cluster = start_cluster()
    except PostgresUnavailable as error:
        pytest.skip(str(error))
    try:
        yield PostgresServer(cluster.admin_url, cluster)
    finally:
        cluster.destroy()


@pytest.fixture(scope="module")
def database_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A freshly created and migrated database for this test module."""
    name = postgres_server.create_database(request.module.__name__)
    url = postgres_server.url_for(name)
    connections = Connections(DatabaseSettings(url=url))
    with connections.connection() as conn:
        migrate(conn)
    try:
        yield url
    finally:
        postgres_server.drop_database(name)


@pytest.fixture
def connections(database_url: str) -> Connections:
    return Connections(DatabaseSettings(url=database_url))


@pytest.fixture
def conn(connections: Connections) -> Iterator[Connection]:
    """A connection to this module's database, with the product's tables emptied first."""
    with connections.connection() as connection:
        cursor = connection.cursor()
        cursor.execute("TRUNCATE telemetry_events_export_queue, event_logs")
        connection.commit()
        yield connection


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[PubSubEmulator]:
    """The real emulator for the whole session; PUBSUB_EMULATOR_HOST points clients at it."""
    try:
        emulator = start_emulator()
    except EmulatorUnavailable as error:
        pytest.skip(str(error))
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host_port
    try:
        yield emulator
    finally:
        if previous is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = previous
        emulator.stop()


@pytest.fixture
def cli(monkeypatch, database_url, conn, capsys):
    """Runs the command line in-process against this module's database; returns (status, out, err)."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    for name in (
        "TELEMETRY_ALLOWLIST",
        "TELEMETRY_EXPORT_MODE",
        "TELEMETRY_EXPORT_FEATURES",
        "INSTANCE_CONNECTION_NAME",
    ):
        monkeypatch.delenv(name, raising=False)

    def run(*argv: str, stdin: str | None = None):
        load_settings.cache_clear()
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        status = main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    yield run
    load_settings.cache_clear()
