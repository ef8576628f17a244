"""The gateway's settings: read once from the environment at start, typed, with documented defaults.

An invalid value stops the process at start with a message naming the variable, rather than
surfacing later as a confusing failure in the middle of a stream. docs/gateway.md has the table.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway_run import licensing
from gateway_run.sources import service_id_problem
from telemetry_events import envvars
from telemetry_events.envvars import SettingError
from telemetry_events.redaction import ALLOWLIST_VARIABLE, AllowlistEntry, parse_allowlist

MIB = 1024 * 1024
# Pub/Sub refuses a publish request of more than 10 MB; a message has to fit in one.
PUBSUB_REQUEST_LIMIT = 10_000_000

_TOPIC_ID = re.compile(r"^[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$")
_TOPIC_PATH = re.compile(r"^projects/(?P<project>[^/]+)/topics/(?P<topic>[^/]+)$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
TOKEN_FORMAT = "SERVICE_ID=SHA256"


@dataclass(frozen=True)
class ServiceToken:
    """An accepted managed-service bearer token, by the hex SHA-256 of its text, and the one service ID it may use."""

    sha256: str
    service_id: str


@dataclass(frozen=True)
class Settings:
    """Everything the gateway reads from its environment. Field docs are in docs/gateway.md."""

    port: int = 8080
    project: str = ""
    topic: str = ""  # full path projects/P/topics/T, or "" in development mode
    deadletter_topic: str = ""  # full path, or "": invalid events are then logged instead
    emulator_host: str = ""
    allowlist: tuple[AllowlistEntry, ...] = ()
    license_public_keys: tuple[bytes, ...] = ()
    allow_unlicensed: bool = False
    service_tokens: tuple[ServiceToken, ...] = ()
    max_receive_bytes: int = 12 * MIB
    publish_concurrency: int = 4
    dev_mode: bool = False
    log_level: str = "INFO"
    workers: int = 1
    max_message_bytes: int = 9_000_000
    max_inflight_bytes: int = 64 * MIB
    publish_timeout: float = 30.0
    max_outstanding_messages: int = 10_000
    max_outstanding_bytes: int = 64 * MIB
    health_interval: float = 10.0
    shutdown_grace: float = 8.0
    # The edge's limits on connections and streams (docs/gateway.md, "Limits at the edge").
    handshake_timeout: float = 10.0
    connection_idle_timeout: float = 60.0
    max_connection_age: float = 3600.0
    max_connection_age_grace: float = 600.0
    keepalive_time: float = 60.0
    keepalive_timeout: float = 20.0
    min_client_ping_interval: float = 10.0
    metadata_timeout: float = 10.0
    stream_idle_timeout: float = 60.0
    max_queue_wait: float = 10.0

    @property
    def topic_short_name(self) -> str:
        return self.topic.rsplit("/", 1)[-1]


# cgroup v2's CPU limit of this container: "<quota> <period>" in microseconds, or "max <period>".
CPU_MAX_FILE = "/sys/fs/cgroup/cpu.max"


def default_workers() -> int:
    """One worker process per CPU this process may use: its CPU affinity, capped by a cgroup CPU quota
    (a container limited to 1 CPU on a 32-CPU host gets 1, not 32)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path(CPU_MAX_FILE).read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota visible: the affinity stands
    return max(1, cpus)


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Reads and checks every setting; raises SettingError naming the first bad variable."""
    env = os.environ if env is None else env
    dev_mode = envvars.flag(env, "TELEMETRY_GATEWAY_DEV_MODE", False)
    project = envvars.text(env, "GOOGLE_CLOUD_PROJECT")
    topic = _topic_path(env, "TELEMETRY_PUBSUB_TOPIC", project, required=not dev_mode)
    deadletter = _topic_path(env, "TELEMETRY_PUBSUB_DEADLETTER_TOPIC", project, required=False)
    if topic and deadletter == topic:
        raise SettingError("TELEMETRY_PUBSUB_DEADLETTER_TOPIC must not be the events topic itself")

    max_message_bytes = envvars.integer(
        env, "TELEMETRY_GATEWAY_MAX_MESSAGE_BYTES", 9_000_000, minimum=1024, maximum=PUBSUB_REQUEST_LIMIT
    )
    max_outstanding_bytes = envvars.integer(
        env, "TELEMETRY_GATEWAY_PUBLISH_MAX_OUTSTANDING_BYTES", 64 * MIB, minimum=MIB, maximum=4096 * MIB
    )
    if max_outstanding_bytes < max_message_bytes:
        # Flow control refuses outright a message bigger than its whole byte budget.
        raise SettingError(
            f"TELEMETRY_GATEWAY_PUBLISH_MAX_OUTSTANDING_BYTES={max_outstanding_bytes} must be at least "
            f"TELEMETRY_GATEWAY_MAX_MESSAGE_BYTES={max_message_bytes}"
        )

    return Settings(
        port=envvars.integer(env, "PORT", 8080, minimum=1, maximum=65535),
        project=project or (topic.split("/")[1] if topic else ""),
        topic=topic,
        deadletter_topic=deadletter,
        emulator_host=envvars.text(env, "PUBSUB_EMULATOR_HOST"),
        allowlist=parse_allowlist(env.get(ALLOWLIST_VARIABLE, "")),
        license_public_keys=_public_keys(env, "TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY"),
        allow_unlicensed=envvars.flag(env, "TELEMETRY_GATEWAY_ALLOW_UNLICENSED", False),
        service_tokens=_service_tokens(env, "TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256"),
        max_receive_bytes=envvars.integer(
            env, "TELEMETRY_GATEWAY_MAX_RECEIVE_BYTES", 12 * MIB, minimum=64 * 1024, maximum=64 * MIB
        ),
        publish_concurrency=envvars.integer(env, "TELEMETRY_GATEWAY_PUBLISH_CONCURRENCY", 4, minimum=1, maximum=64),
        dev_mode=dev_mode,
        log_level=envvars.choice(env, "LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper(),
        workers=envvars.integer(env, "TELEMETRY_GATEWAY_WORKERS", default_workers(), minimum=0, maximum=64),
        max_message_bytes=max_message_bytes,
        max_inflight_bytes=envvars.integer(
            env, "TELEMETRY_GATEWAY_MAX_INFLIGHT_BYTES", 64 * MIB, minimum=MIB, maximum=4096 * MIB
        ),
        publish_timeout=envvars.seconds(env, "TELEMETRY_GATEWAY_PUBLISH_TIMEOUT", 30.0, minimum=1.0, maximum=600.0),
        max_outstanding_messages=envvars.integer(
            env, "TELEMETRY_GATEWAY_PUBLISH_MAX_OUTSTANDING_MESSAGES", 10_000, minimum=100, maximum=1_000_000
        ),
        max_outstanding_bytes=max_outstanding_bytes,
        health_interval=envvars.seconds(env, "TELEMETRY_GATEWAY_HEALTH_INTERVAL", 10.0, minimum=0.1, maximum=3600.0),
        # Cloud Run sends SIGKILL about 10 s after SIGTERM: the whole stop has to fit well inside.
        shutdown_grace=envvars.seconds(env, "TELEMETRY_GATEWAY_SHUTDOWN_GRACE", 8.0, minimum=1.0, maximum=9.0),
        handshake_timeout=envvars.seconds(env, "TELEMETRY_GATEWAY_HANDSHAKE_TIMEOUT", 10.0, minimum=1.0, maximum=120.0),
        connection_idle_timeout=envvars.seconds(
            env, "TELEMETRY_GATEWAY_CONNECTION_IDLE_TIMEOUT", 60.0, minimum=1.0, maximum=3600.0
        ),
        max_connection_age=envvars.seconds(
            env, "TELEMETRY_GATEWAY_MAX_CONNECTION_AGE", 3600.0, minimum=1.0, maximum=86400.0
        ),
        max_connection_age_grace=envvars.seconds(
            env, "TELEMETRY_GATEWAY_MAX_CONNECTION_AGE_GRACE", 600.0, minimum=1.0, maximum=86400.0
        ),
        keepalive_time=envvars.seconds(env, "TELEMETRY_GATEWAY_KEEPALIVE_TIME", 60.0, minimum=1.0, maximum=7200.0),
        keepalive_timeout=envvars.seconds(env, "TELEMETRY_GATEWAY_KEEPALIVE_TIMEOUT", 20.0, minimum=1.0, maximum=600.0),
        min_client_ping_interval=envvars.seconds(
            env, "TELEMETRY_GATEWAY_MIN_CLIENT_PING_INTERVAL", 10.0, minimum=1.0, maximum=3600.0
        ),
        metadata_timeout=envvars.seconds(env, "TELEMETRY_GATEWAY_METADATA_TIMEOUT", 10.0, minimum=0.5, maximum=120.0),
        stream_idle_timeout=envvars.seconds(
            env, "TELEMETRY_GATEWAY_STREAM_IDLE_TIMEOUT", 60.0, minimum=0.5, maximum=3600.0
        ),
        max_queue_wait=envvars.seconds(env, "TELEMETRY_GATEWAY_MAX_QUEUE_WAIT", 10.0, minimum=0.5, maximum=600.0),
    )


def _topic_path(env: Mapping[str, str], name: str, project: str, required: bool) -> str:
    raw = envvars.text(env, name)
    if not raw:
        if required:
            raise SettingError(f"{name} is required (a topic ID, or projects/PROJECT/topics/TOPIC)")
        return ""
    match = _TOPIC_PATH.fullmatch(raw)
    if match:
        topic_id = match["topic"]
    else:
        if not project:
            raise SettingError(f"{name}={raw!r} is a topic ID: GOOGLE_CLOUD_PROJECT is required with it")
        topic_id = raw
    if not _TOPIC_ID.fullmatch(topic_id) or topic_id.lower().startswith("goog"):
        raise SettingError(f"{name}={raw!r} is not a valid Pub/Sub topic name")
    return raw if match else f"projects/{project}/topics/{topic_id}"


def _public_keys(env: Mapping[str, str], name: str) -> tuple[bytes, ...]:
    """Comma-separated base64 Ed25519 public keys: more than one lets keys rotate without a gap."""
    keys = []
    for position, item in enumerate(envvars.text(env, name).split(","), start=1):
        if not item.strip():
            continue
        try:
            keys.append(licensing.decode_public_key(item))
        except licensing.LicenseError as error:
            raise SettingError(f"{name}: key {position}: {error}") from None
    return tuple(keys)


def _service_tokens(env: Mapping[str, str], name: str) -> tuple[ServiceToken, ...]:
    """Comma-separated SERVICE_ID=SHA256 entries: each token hash is bound to the one service ID it may name.

    A service ID may have several hashes (a token being rotated); a hash names one service only.
    """
    tokens: dict[str, ServiceToken] = {}
    for position, item in enumerate(envvars.text(env, name).split(","), start=1):
        item = item.strip()
        if not item:
            continue
        service_id, separator, digest = (part.strip() for part in item.rpartition("="))
        if not separator or not service_id:
            raise SettingError(
                f"{name}: entry {position} is not {TOKEN_FORMAT}: each token hash is bound to the service ID it "
                "may send as (the bare-hash format is no longer accepted)"
            )
        problem = service_id_problem(service_id)
        if problem:
            raise SettingError(f"{name}: entry {position}: {problem}")
        digest = digest.lower()
        if not _SHA256_HEX.fullmatch(digest):
            raise SettingError(f"{name}: entry {position} has no SHA-256 hex digest (64 hex characters) after '='")
        bound = tokens.get(digest)
        if bound is not None and bound.service_id != service_id:
            raise SettingError(
                f"{name}: entry {position} binds a token hash to {service_id!r} that is already bound to "
                f"{bound.service_id!r}: one token, one service"
            )
        tokens[digest] = ServiceToken(digest, service_id)
    return tuple(tokens.values())
