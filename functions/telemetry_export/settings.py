"""Every setting of the functions and the command line, read once from the environment.

Each field's default is documented in the README's settings table; an invalid value fails
at start with a SettingError naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

from telemetry_events.envvars import SettingError, choice, flag, integer, seconds, text
from telemetry_events.export_mode import ExportScope, scope_from_env
from telemetry_events.redaction import RedactionPolicy, policy_from_env
from telemetry_export.store.connection import IP_TYPES, DatabaseSettings, parse_database_url

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/telemetry"


@dataclass(frozen=True)
class GatewayIdentity:
    """How this instance introduces itself to the gateway."""

    license_key: str = ""
    instance_id: str = ""
    external_url: str = ""


@dataclass(frozen=True)
class ExporterSettings:
    gateway_addr: str = ""
    batch_size: int = 10_000
    max_message_bytes: int = 1_000_000
    lease_seconds: float = 300.0
    max_attempts: int = 10
    function_timeout_seconds: float = 300.0
    deadline_margin_seconds: float = 30.0
    rpc_timeout_seconds: float = 60.0
    allow_insecure: bool = False  # plaintext http:// to a host that is not loopback
    identity: GatewayIdentity = field(default_factory=GatewayIdentity)

    @property
    def time_budget_seconds(self) -> float:
        return max(self.function_timeout_seconds - self.deadline_margin_seconds, 1.0)


@dataclass(frozen=True)
class CleanupSettings:
    retention_seconds: float = 24 * 3600.0
    quarantine_retention_seconds: float = 30 * 86400.0
    chunk_size: int = 50_000
    time_budget_seconds: float = 240.0


@dataclass(frozen=True)
class MetricsSettings:
    project: str = ""
    task_id: str = "telemetry-export"
    location: str = "global"


@dataclass(frozen=True)
class Settings:
    database: DatabaseSettings
    redaction: RedactionPolicy
    export_scope: ExportScope
    exporter: ExporterSettings
    cleanup: CleanupSettings
    metrics: MetricsSettings
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(
            database=_database(env),
            redaction=policy_from_env(env),
            export_scope=scope_from_env(env),
            exporter=_exporter(env),
            cleanup=CleanupSettings(
                retention_seconds=seconds(env, "TELEMETRY_CLEANUP_RETENTION", 24 * 3600.0, minimum=0),
                quarantine_retention_seconds=seconds(
                    env, "TELEMETRY_CLEANUP_QUARANTINE_RETENTION", 30 * 86400.0, minimum=0
                ),
                chunk_size=integer(env, "TELEMETRY_CLEANUP_CHUNK_SIZE", 50_000, minimum=1),
                time_budget_seconds=seconds(env, "TELEMETRY_CLEANUP_TIME_BUDGET", 240.0, minimum=1),
            ),
            metrics=MetricsSettings(
                project=text(env, "GOOGLE_CLOUD_PROJECT"),
                task_id=text(env, "TELEMETRY_METRICS_TASK_ID", "telemetry-export"),
                location=text(env, "TELEMETRY_METRICS_LOCATION", "global"),
            ),
            log_level=choice(env, "LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper(),
        )


def _database(env: Mapping[str, str]) -> DatabaseSettings:
    instance = text(env, "INSTANCE_CONNECTION_NAME")
    if instance:
        if instance.count(":") != 2:
            raise SettingError(f"INSTANCE_CONNECTION_NAME={instance!r} must look like project:region:instance")
        iam_auth = flag(env, "DB_IAM_AUTH", False)
        user = text(env, "DB_USER")
        if not user:
            raise SettingError("DB_USER is required when INSTANCE_CONNECTION_NAME is set")
        password = env.get("DB_PASSWORD", "")
        if not iam_auth and not password:
            raise SettingError("DB_PASSWORD is required when INSTANCE_CONNECTION_NAME is set and DB_IAM_AUTH is false")
        return DatabaseSettings(
            instance_connection_name=instance,
            user=user,
            name=text(env, "DB_NAME", "telemetry"),
            password=password,
            iam_auth=iam_auth,
            ip_type=choice(env, "DB_IP_TYPE", "public", IP_TYPES),
        )
    url = text(env, "DATABASE_URL", DEFAULT_DATABASE_URL)
    parse_database_url(url)  # fail now, naming the variable, rather than on first use
    return DatabaseSettings(url=url)


def _exporter(env: Mapping[str, str]) -> ExporterSettings:
    addr = text(env, "TELEMETRY_GATEWAY_ADDR")
    allow_insecure = flag(env, "TELEMETRY_EXPORT_ALLOW_INSECURE", False)
    if addr and not addr.startswith(("http://", "https://")):
        raise SettingError(f"TELEMETRY_GATEWAY_ADDR={addr!r} must start with http:// (local) or https://")
    if addr:
        # Imported here: gateway_client imports grpc, which the other functions never need.
        from telemetry_export.gateway_client import parse_gateway_addr

        parse_gateway_addr(addr, allow_insecure=allow_insecure)
    timeout = seconds(env, "TELEMETRY_EXPORT_FUNCTION_TIMEOUT", 300.0, minimum=1, maximum=3600)
    margin = seconds(env, "TELEMETRY_EXPORT_DEADLINE_MARGIN", 30.0, minimum=0)
    if margin >= timeout:
        raise SettingError("TELEMETRY_EXPORT_DEADLINE_MARGIN must be shorter than TELEMETRY_EXPORT_FUNCTION_TIMEOUT")
    return ExporterSettings(
        gateway_addr=addr,
        batch_size=integer(env, "TELEMETRY_EXPORT_BATCH_SIZE", 10_000, minimum=100, maximum=100_000),
        max_message_bytes=integer(
            env, "TELEMETRY_EXPORT_MAX_MESSAGE_BYTES", 1_000_000, minimum=16_384, maximum=4 * 1024 * 1024
        ),
        lease_seconds=seconds(env, "TELEMETRY_EXPORT_LEASE", 300.0, minimum=1),
        max_attempts=integer(env, "TELEMETRY_EXPORT_MAX_ATTEMPTS", 10, minimum=1),
        function_timeout_seconds=timeout,
        deadline_margin_seconds=margin,
        rpc_timeout_seconds=seconds(env, "TELEMETRY_EXPORT_RPC_TIMEOUT", 60.0, minimum=1),
        allow_insecure=allow_insecure,
        identity=GatewayIdentity(
            license_key=env.get("TELEMETRY_LICENSE_KEY", "").strip(),
            instance_id=text(env, "TELEMETRY_INSTANCE_ID"),
            external_url=text(env, "TELEMETRY_EXTERNAL_URL"),
        ),
    )


@cache
def load_settings() -> Settings:
    """The process' settings, read from os.environ on first use."""
    return Settings.from_env(os.environ)
