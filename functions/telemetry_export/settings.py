"""Every setting of the functions and the command line, declared once and read once from the environment.

Each setting is a declaration (telemetry_events.envvars): its variable, default, range and meaning. Most are
declared below; the database's are in store/connection.py, the export scope's in telemetry_events/export_mode.py,
the allowlist in telemetry_events/redaction.py and LOG_LEVEL in telemetry_events/logs.py, beside the values they
make. `DECLARED` lists them all, in the order of the README's table (scripts/write_settings_tables.py writes it).
The rules between settings are the code of `Settings.from_env`; an invalid value fails at start with a
SettingError naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

from telemetry_events.envvars import FUNCTIONS, Flag, Integer, Seconds, Setting, SettingError, Text
from telemetry_events.export_mode import EXPORT_FEATURES, EXPORT_MODE, ExportScope, scope_from_env
from telemetry_events.logs import LOG_LEVEL
from telemetry_events.redaction import ALLOWLIST, RedactionPolicy, policy_from_env
from telemetry_export.store.connection import (
    DATABASE_URL,
    DB_IAM_AUTH,
    DB_IP_TYPE,
    DB_NAME,
    DB_PASSWORD,
    DB_USER,
    INSTANCE_CONNECTION_NAME,
    DatabaseSettings,
    parse_database_url,
)

DEFAULT_DATABASE_URL = DATABASE_URL.default

# --- The exporter -------------------------------------------------------------------------------------------------

GATEWAY_ADDR = Text(
    "TELEMETRY_GATEWAY_ADDR",
    "",
    meaning="gateway for the exporter: `http://host:port` plaintext (local only) or `https://host` (TLS + ID token)",
    read_by=FUNCTIONS,
)
LICENSE_KEY = Text(
    "TELEMETRY_LICENSE_KEY", "", meaning="license key the exporter identifies this instance with", read_by=FUNCTIONS
)
INSTANCE_ID = Text(
    "TELEMETRY_INSTANCE_ID", "", meaning="this instance's ID, sent to the gateway with every stream", read_by=FUNCTIONS
)
EXTERNAL_URL = Text(
    "TELEMETRY_EXTERNAL_URL",
    "",
    meaning="this instance's external URL, sent to the gateway with every stream",
    read_by=FUNCTIONS,
)
BATCH_SIZE = Integer(
    "TELEMETRY_EXPORT_BATCH_SIZE",
    10_000,
    minimum=100,
    maximum=100_000,
    meaning="rows claimed per batch",
    read_by=FUNCTIONS,
)
MAX_MESSAGE_BYTES = Integer(
    "TELEMETRY_EXPORT_MAX_MESSAGE_BYTES",
    1_000_000,
    minimum=16_384,
    maximum=4 * 1024 * 1024,
    unit="bytes",
    meaning="upper bound of one `RecordEvents` message",
    read_by=FUNCTIONS,
)
LEASE = Seconds(
    "TELEMETRY_EXPORT_LEASE",
    300.0,
    minimum=1,
    meaning="how long a claimed row belongs to one exporter run",
    read_by=FUNCTIONS,
)
MAX_ATTEMPTS = Integer(
    "TELEMETRY_EXPORT_MAX_ATTEMPTS", 10, minimum=1, meaning="attempts before a row is quarantined", read_by=FUNCTIONS
)
FUNCTION_TIMEOUT = Seconds(
    "TELEMETRY_EXPORT_FUNCTION_TIMEOUT",
    300.0,
    minimum=1,
    maximum=3600,
    meaning="the export function's timeout; keep it equal to the deployed one",
    read_by=FUNCTIONS,
)
DEADLINE_MARGIN = Seconds(
    "TELEMETRY_EXPORT_DEADLINE_MARGIN",
    30.0,
    minimum=0,
    meaning="stop claiming this long before the timeout; shorter than `TELEMETRY_EXPORT_FUNCTION_TIMEOUT`",
    read_by=FUNCTIONS,
)
RPC_TIMEOUT = Seconds(
    "TELEMETRY_EXPORT_RPC_TIMEOUT",
    60.0,
    minimum=1,
    meaning=(
        "the gateway is stuck after this long without any answer while events are outstanding; keep it above the "
        "gateway's queue wait plus its publish timeout, 40 s"
    ),
    read_by=FUNCTIONS,
)
ALLOW_INSECURE = Flag(
    "TELEMETRY_EXPORT_ALLOW_INSECURE",
    False,
    meaning="allow `http://` (plaintext, license key included) to a host that is not loopback",
    read_by=FUNCTIONS,
)

# --- Cleanup --------------------------------------------------------------------------------------------------------

CLEANUP_RETENTION = Seconds(
    "TELEMETRY_CLEANUP_RETENTION",
    24 * 3600.0,
    minimum=0,
    meaning="exported rows are deleted after this",
    read_by=FUNCTIONS,
)
CLEANUP_QUARANTINE_RETENTION = Seconds(
    "TELEMETRY_CLEANUP_QUARANTINE_RETENTION",
    30 * 86400.0,
    minimum=0,
    meaning="quarantined rows are deleted after this",
    read_by=FUNCTIONS,
)
CLEANUP_CHUNK_SIZE = Integer(
    "TELEMETRY_CLEANUP_CHUNK_SIZE", 50_000, minimum=1, meaning="rows deleted per statement", read_by=FUNCTIONS
)
CLEANUP_TIME_BUDGET = Seconds(
    "TELEMETRY_CLEANUP_TIME_BUDGET",
    240.0,
    minimum=1,
    meaning="cleanup stops starting new chunks after this",
    read_by=FUNCTIONS,
)

# --- Metrics --------------------------------------------------------------------------------------------------------

PROJECT = Text(
    "GOOGLE_CLOUD_PROJECT",
    "",
    meaning="when set, the metrics function writes to Cloud Monitoring in this project; otherwise it logs",
    read_by=FUNCTIONS,
)
METRICS_TASK_ID = Text(
    "TELEMETRY_METRICS_TASK_ID",
    "telemetry-export",
    meaning="the `task_id` label of the gauges' `generic_task` resource",
    read_by=FUNCTIONS,
)
METRICS_LOCATION = Text(
    "TELEMETRY_METRICS_LOCATION",
    "global",
    meaning="the `location` label of the gauges' `generic_task` resource",
    read_by=FUNCTIONS,
)

DECLARED: tuple[Setting, ...] = (
    DATABASE_URL,
    INSTANCE_CONNECTION_NAME,
    DB_USER,
    DB_NAME,
    DB_PASSWORD,
    DB_IAM_AUTH,
    DB_IP_TYPE,
    ALLOWLIST,
    EXPORT_MODE,
    EXPORT_FEATURES,
    GATEWAY_ADDR,
    LICENSE_KEY,
    INSTANCE_ID,
    EXTERNAL_URL,
    BATCH_SIZE,
    MAX_MESSAGE_BYTES,
    LEASE,
    MAX_ATTEMPTS,
    FUNCTION_TIMEOUT,
    DEADLINE_MARGIN,
    RPC_TIMEOUT,
    ALLOW_INSECURE,
    CLEANUP_RETENTION,
    CLEANUP_QUARANTINE_RETENTION,
    CLEANUP_CHUNK_SIZE,
    CLEANUP_TIME_BUDGET,
    PROJECT,
    METRICS_TASK_ID,
    METRICS_LOCATION,
    LOG_LEVEL,
)


@dataclass(frozen=True)
class GatewayIdentity:
    """How this instance introduces itself to the gateway."""

    license_key: str = LICENSE_KEY.default
    instance_id: str = INSTANCE_ID.default
    external_url: str = EXTERNAL_URL.default


@dataclass(frozen=True)
class ExporterSettings:
    gateway_addr: str = GATEWAY_ADDR.default
    batch_size: int = BATCH_SIZE.default
    max_message_bytes: int = MAX_MESSAGE_BYTES.default
    lease_seconds: float = LEASE.default
    max_attempts: int = MAX_ATTEMPTS.default
    function_timeout_seconds: float = FUNCTION_TIMEOUT.default
    deadline_margin_seconds: float = DEADLINE_MARGIN.default
    rpc_timeout_seconds: float = RPC_TIMEOUT.default
    allow_insecure: bool = ALLOW_INSECURE.default  # plaintext http:// to a host that is not loopback
    identity: GatewayIdentity = field(default_factory=GatewayIdentity)

    @property
    def time_budget_seconds(self) -> float:
        return max(self.function_timeout_seconds - self.deadline_margin_seconds, 1.0)


@dataclass(frozen=True)
class CleanupSettings:
    retention_seconds: float = CLEANUP_RETENTION.default
    quarantine_retention_seconds: float = CLEANUP_QUARANTINE_RETENTION.default
    chunk_size: int = CLEANUP_CHUNK_SIZE.default
    time_budget_seconds: float = CLEANUP_TIME_BUDGET.default


@dataclass(frozen=True)
class MetricsSettings:
    project: str = PROJECT.default
    task_id: str = METRICS_TASK_ID.default
    location: str = METRICS_LOCATION.default


@dataclass(frozen=True)
class Settings:
    database: DatabaseSettings
    redaction: RedactionPolicy
    export_scope: ExportScope
    exporter: ExporterSettings
    cleanup: CleanupSettings
    metrics: MetricsSettings
    log_level: str = LOG_LEVEL.default.upper()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(
            database=_database(env),
            redaction=policy_from_env(env),
            export_scope=scope_from_env(env),
            exporter=_exporter(env),
            cleanup=CleanupSettings(
                retention_seconds=CLEANUP_RETENTION.read(env),
                quarantine_retention_seconds=CLEANUP_QUARANTINE_RETENTION.read(env),
                chunk_size=CLEANUP_CHUNK_SIZE.read(env),
                time_budget_seconds=CLEANUP_TIME_BUDGET.read(env),
            ),
            metrics=MetricsSettings(
                project=PROJECT.read(env),
                task_id=METRICS_TASK_ID.read(env),
                location=METRICS_LOCATION.read(env),
            ),
            log_level=LOG_LEVEL.read(env).upper(),
        )


def _database(env: Mapping[str, str]) -> DatabaseSettings:
    instance = INSTANCE_CONNECTION_NAME.read(env)
    if instance:
        if instance.count(":") != 2:
            raise SettingError(f"{INSTANCE_CONNECTION_NAME.name}={instance!r} must look like project:region:instance")
        iam_auth = DB_IAM_AUTH.read(env)
        user = DB_USER.read(env)
        if not user:
            raise SettingError(f"{DB_USER.name} is required when {INSTANCE_CONNECTION_NAME.name} is set")
        password = DB_PASSWORD.read(env)
        if not iam_auth and not password:
            raise SettingError(
                f"{DB_PASSWORD.name} is required when {INSTANCE_CONNECTION_NAME.name} is set "
                f"and {DB_IAM_AUTH.name} is false"
            )
        return DatabaseSettings(
            instance_connection_name=instance,
            user=user,
            name=DB_NAME.read(env),
            password=password,
            iam_auth=iam_auth,
            ip_type=DB_IP_TYPE.read(env),
        )
    url = DATABASE_URL.read(env)
    parse_database_url(url)  # fail now, naming the variable, rather than on first use
    return DatabaseSettings(url=url)


def _exporter(env: Mapping[str, str]) -> ExporterSettings:
    addr = GATEWAY_ADDR.read(env)
    allow_insecure = ALLOW_INSECURE.read(env)
    if addr and not addr.startswith(("http://", "https://")):
        raise SettingError(f"{GATEWAY_ADDR.name}={addr!r} must start with http:// (local) or https://")
    if addr:
        # Imported here: gateway_client imports grpc, which the other functions never need.
        from telemetry_export.gateway_client import parse_gateway_addr

        parse_gateway_addr(addr, allow_insecure=allow_insecure)
    timeout = FUNCTION_TIMEOUT.read(env)
    margin = DEADLINE_MARGIN.read(env)
    if margin >= timeout:
        raise SettingError(f"{DEADLINE_MARGIN.name} must be shorter than {FUNCTION_TIMEOUT.name}")
    return ExporterSettings(
        gateway_addr=addr,
        batch_size=BATCH_SIZE.read(env),
        max_message_bytes=MAX_MESSAGE_BYTES.read(env),
        lease_seconds=LEASE.read(env),
        max_attempts=MAX_ATTEMPTS.read(env),
        function_timeout_seconds=timeout,
        deadline_margin_seconds=margin,
        rpc_timeout_seconds=RPC_TIMEOUT.read(env),
        allow_insecure=allow_insecure,
        identity=GatewayIdentity(
            license_key=LICENSE_KEY.read(env),
            instance_id=INSTANCE_ID.read(env),
            external_url=EXTERNAL_URL.read(env),
        ),
    )


@cache
def load_settings() -> Settings:
    """The process' settings, read from os.environ on first use."""
    return Settings.from_env(os.environ)
