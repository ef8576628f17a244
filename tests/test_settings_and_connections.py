"""Settings fail at start naming the variable; the database mode is chosen without Google credentials."""

from __future__ import annotations

import subprocess
import sys

import pytest

from telemetry_events.envvars import SettingError
from telemetry_export.settings import DEFAULT_DATABASE_URL, Settings
from telemetry_export.store.connection import Connections, DatabaseSettings, parse_database_url


def test_defaults_describe_a_local_setup():
    settings = Settings.from_env({})
    assert settings.database == DatabaseSettings(url=DEFAULT_DATABASE_URL)
    assert settings.exporter.batch_size == 10_000
    assert settings.exporter.max_attempts == 10
    assert settings.exporter.time_budget_seconds == 270
    assert settings.cleanup.retention_seconds == 86_400
    assert settings.cleanup.quarantine_retention_seconds == 30 * 86_400
    assert settings.metrics.project == ""


def test_durations_accept_units():
    settings = Settings.from_env({"TELEMETRY_CLEANUP_RETENTION": "36h", "TELEMETRY_EXPORT_LEASE": "90s"})
    assert settings.cleanup.retention_seconds == 36 * 3600
    assert settings.exporter.lease_seconds == 90


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TELEMETRY_EXPORT_BATCH_SIZE": "50"}, "TELEMETRY_EXPORT_BATCH_SIZE=50 is below the minimum of 100"),
        ({"TELEMETRY_EXPORT_BATCH_SIZE": "lots"}, "TELEMETRY_EXPORT_BATCH_SIZE='lots' is not a whole number"),
        ({"TELEMETRY_CLEANUP_RETENTION": "a day"}, "TELEMETRY_CLEANUP_RETENTION='a day' is not a duration"),
        ({"TELEMETRY_GATEWAY_ADDR": "gateway:443"}, "TELEMETRY_GATEWAY_ADDR='gateway:443' must start with http://"),
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL must start with postgresql://"),
        ({"DATABASE_URL": "postgresql://127.0.0.1:5432"}, "DATABASE_URL must name a database"),
        ({"DB_IAM_AUTH": "maybe", "INSTANCE_CONNECTION_NAME": "p:r:i", "DB_USER": "u"}, "DB_IAM_AUTH='maybe'"),
        ({"INSTANCE_CONNECTION_NAME": "p-r-i"}, "INSTANCE_CONNECTION_NAME='p-r-i' must look like project:region"),
        ({"INSTANCE_CONNECTION_NAME": "p:r:i", "DB_USER": "u"}, "DB_PASSWORD is required"),
        ({"TELEMETRY_ALLOWLIST": "x"}, "TELEMETRY_ALLOWLIST entry 1"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL='loud' must be one of"),
        (
            {"TELEMETRY_EXPORT_FUNCTION_TIMEOUT": "60", "TELEMETRY_EXPORT_DEADLINE_MARGIN": "60"},
            "TELEMETRY_EXPORT_DEADLINE_MARGIN must be shorter",
        ),
    ],
)
def test_invalid_settings_fail_naming_the_variable(env, message):
    with pytest.raises(SettingError, match=message.replace("(", r"\(").replace("?", r"\?")):
        Settings.from_env(env)


def test_database_urls_become_pg8000_arguments():
    assert parse_database_url("postgresql://app:p%40ss@db.internal:6543/telemetry") == {
        "user": "app",
        "password": "p@ss",
        "host": "db.internal",
        "port": 6543,
        "database": "telemetry",
    }
    assert parse_database_url("postgresql:///telemetry?host=/cloudsql/p:r:i") == {
        "user": "postgres",
        "database": "telemetry",
        "unix_sock": "/cloudsql/p:r:i/.s.PGSQL.5432",
    }


class RecordingConnector:
    """Stands in for google.cloud.sql.connector.Connector, which needs Google credentials."""

    instances: list[RecordingConnector] = []

    def __init__(self, **kwargs):
        self.init_kwargs = kwargs
        self.connect_calls: list[tuple[tuple, dict]] = []
        self.closed = False
        RecordingConnector.instances.append(self)

    def connect(self, *args, **kwargs):
        self.connect_calls.append((args, kwargs))
        return object()

    def close(self):
        self.closed = True


def test_cloud_sql_mode_builds_one_lazy_connector_with_iam_auth():
    RecordingConnector.instances.clear()
    settings = Settings.from_env(
        {
            "INSTANCE_CONNECTION_NAME": "proj:us-central1:db",
            "DB_USER": "exporter@proj.iam",
            "DB_IAM_AUTH": "true",
            "DB_NAME": "telemetry",
            "DB_IP_TYPE": "private",
        }
    )
    connections = Connections(settings.database, connector_factory=RecordingConnector)
    assert RecordingConnector.instances == []  # nothing is built until a connection is asked for
    connections.open()
    connections.open()
    [connector] = RecordingConnector.instances
    assert connector.init_kwargs == {"refresh_strategy": "lazy", "ip_type": "private", "enable_iam_auth": True}
    assert (
        connector.connect_calls
        == [
            (
                ("proj:us-central1:db", "pg8000"),
                {"user": "exporter@proj.iam", "db": "telemetry", "enable_iam_auth": True},
            )
        ]
        * 2
    )
    connections.close()
    assert connector.closed


def test_cloud_sql_mode_with_a_password():
    RecordingConnector.instances.clear()
    settings = Settings.from_env(
        {"INSTANCE_CONNECTION_NAME": "proj:us-central1:db", "DB_USER": "app", "DB_PASSWORD": "s3cret"}
    )
    Connections(settings.database, connector_factory=RecordingConnector).open()
    [connector] = RecordingConnector.instances
    assert connector.init_kwargs["enable_iam_auth"] is False
    assert connector.connect_calls[0][1] == {
        "user": "app",
        "db": "telemetry",
        "enable_iam_auth": False,
        "password": "s3cret",
    }


def test_no_google_client_is_imported_when_the_job_modules_load():
    code = (
        "import sys, telemetry_export.settings, telemetry_export.recording, telemetry_export.store.connection, "
        "telemetry_export.cli.main; "
        "loaded = [m for m in ('google.cloud.sql.connector', 'google.cloud.monitoring_v3', 'google.auth.transport') "
        "if m in sys.modules]; print(loaded); sys.exit(1 if loaded else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
