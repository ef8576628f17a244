"""Cleanup and metrics fixtures: queue rows in chosen states, and a process environment of the test's own."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

from telemetry_export import http_jobs, monitoring
from telemetry_export.settings import load_settings

HOUR = 3600.0
DAY = 24 * HOUR


class QueueRows:
    """Adds rows in a given state; `label` is stored as the payload so a test can see which rows are left.

    Times are in seconds before `at` (the database's now() unless given), leases in seconds after it.
    """

    def __init__(self, conn):
        self.conn = conn

    def add(
        self,
        label: str,
        count: int = 1,
        *,
        age: float = 60.0,
        exported_ago: float | None = None,
        quarantined_ago: float | None = None,
        leased_for: float | None = None,
        at: datetime | None = None,
    ) -> None:
        cursor = self.conn.cursor()
        cursor.execute(
            "INSERT INTO telemetry_events_export_queue"
            " (id, timestamp, payload_pb, exported_at, quarantined_at, quarantine_reason, leased_until)"
            " SELECT gen_random_uuid(), base.at - make_interval(secs => %s::float8), convert_to(%s, 'UTF8'),"
            "  base.at - make_interval(secs => %s::float8), base.at - make_interval(secs => %s::float8),"
            "  CASE WHEN %s::float8 IS NULL THEN NULL ELSE 'cannot be decoded' END,"
            "  base.at + make_interval(secs => %s::float8)"
            " FROM generate_series(1, %s), (SELECT coalesce(%s::timestamptz, now()) AS at) AS base",
            (age, label, exported_ago, quarantined_ago, quarantined_ago, leased_for, count, at),
        )
        self.conn.commit()

    def labels(self) -> dict[str, int]:
        """How many rows of each label are left."""
        cursor = self.conn.cursor()
        cursor.execute(
            "SELECT convert_from(payload_pb, 'UTF8'), count(*) FROM telemetry_events_export_queue GROUP BY 1"
        )
        left = {label: count for label, count in cursor.fetchall()}
        self.conn.commit()
        return left


@pytest.fixture
def queue(conn) -> QueueRows:
    return QueueRows(conn)


@pytest.fixture
def job_env(monkeypatch, database_url) -> Iterator[pytest.MonkeyPatch]:
    """The functions' and the command line's environment: this module's database, no project, default windows.

    Also forgets what a previous test left in the process: the cached settings, the functions'
    connections and the gauge sinks (each holding its own Cloud Monitoring client).
    """
    monkeypatch.setenv("DATABASE_URL", database_url)
    for name in (
        "INSTANCE_CONNECTION_NAME",
        "GOOGLE_CLOUD_PROJECT",
        "TELEMETRY_METRICS_TASK_ID",
        "TELEMETRY_METRICS_LOCATION",
        "TELEMETRY_CLEANUP_RETENTION",
        "TELEMETRY_CLEANUP_QUARANTINE_RETENTION",
        "TELEMETRY_CLEANUP_CHUNK_SIZE",
        "TELEMETRY_CLEANUP_TIME_BUDGET",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(http_jobs, "_process", http_jobs._Process())
    _forget_process_state()
    yield monkeypatch
    _forget_process_state()


def _forget_process_state() -> None:
    load_settings.cache_clear()
    monitoring.sink_for.cache_clear()


class RecordingMonitoringClient:
    """Stands in for MetricServiceClient at the API boundary: records each create_time_series call."""

    def __init__(self, error: Exception | None = None):
        self.requests: list = []
        self.timeouts: list = []
        self.error = error

    def create_time_series(self, request=None, *, timeout=None, **kwargs):
        self.requests.append(request)
        self.timeouts.append(timeout)
        if self.error is not None:
            raise self.error


@pytest.fixture
def monitoring_client(monkeypatch) -> Iterator[RecordingMonitoringClient]:
    """Replaces the client factory; `.built` counts how many clients were built."""
    client = RecordingMonitoringClient()
    client.built = 0

    def build():
        client.built += 1
        return client

    monkeypatch.setattr(monitoring, "client_factory", build)
    monitoring.sink_for.cache_clear()
    yield client
    monitoring.sink_for.cache_clear()
