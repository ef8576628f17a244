"""The gateway's settings: each declared once, read once from the environment at start, typed.

Each setting is a declaration (telemetry_events.envvars): its variable, default, range and meaning; TELEMETRY_ALLOWLIST
and LOG_LEVEL, which the functions read too, are declared in telemetry_events. `DECLARED` lists them all, in the
order of the settings tables of README.md and docs/gateway.md (scripts/write_settings_tables.py writes both). The
rules between settings are the code of `from_env`. An invalid value stops the process at start with a message naming
the variable, rather than surfacing later as a confusing failure in the middle of a stream.
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
from telemetry_events.envvars import GATEWAY, Flag, Integer, Seconds, Setting, SettingError, Text
from telemetry_events.logs import LOG_LEVEL
from telemetry_events.redaction import ALLOWLIST, AllowlistEntry, parse_allowlist

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


# --- Where events go ------------------------------------------------------------------------------------------------

PORT = Integer(
    "PORT",
    8080,
    minimum=1,
    maximum=65535,
    meaning="port to listen on, plaintext HTTP/2 (Cloud Run's `h2c`); Cloud Run sets it",
    read_by=GATEWAY,
)
PROJECT = Text("GOOGLE_CLOUD_PROJECT", "", meaning="project of the topics when they are given as IDs", read_by=GATEWAY)
TOPIC = Text(
    "TELEMETRY_PUBSUB_TOPIC",
    "",
    shown_default="required (unless dev mode)",
    meaning="events topic: an ID, or `projects/P/topics/T`",
    read_by=GATEWAY,
)
DEADLETTER_TOPIC = Text(
    "TELEMETRY_PUBSUB_DEADLETTER_TOPIC",
    "",
    meaning="topic for events that can never be published, with their reason; unset: they are logged at WARNING",
    read_by=GATEWAY,
)
EMULATOR_HOST = Text(
    "PUBSUB_EMULATOR_HOST",
    "",
    meaning="`host:port` of a Pub/Sub emulator; read by the client library",
    read_by=GATEWAY,
)
DEV_MODE = Flag(
    "TELEMETRY_GATEWAY_DEV_MODE",
    False,
    meaning="development mode: no Pub/Sub; each message is logged instead of published",
    read_by=GATEWAY,
)

# --- Who may send ---------------------------------------------------------------------------------------------------

LICENSE_PUBLIC_KEYS = Text(
    "TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY",
    "",
    meaning=(
        "base64 Ed25519 public key(s) verifying license keys, comma-separated for rotation; unset: licensed "
        "instances are refused (`FAILED_PRECONDITION`)"
    ),
    read_by=GATEWAY,
)
ALLOW_UNLICENSED = Flag(
    "TELEMETRY_GATEWAY_ALLOW_UNLICENSED",
    False,
    meaning="accept unlicensed instances (identified by `instance_id` only)",
    read_by=GATEWAY,
)
SERVICE_TOKENS = Text(
    "TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256",
    "",
    meaning=(
        "the bearer tokens managed services may use, each bound to its service: comma-separated `SERVICE_ID=SHA256` "
        "(hex SHA-256 of the token); unset: managed services are refused; a bare hash (the old format) is refused at "
        "start"
    ),
    read_by=GATEWAY,
)

# --- Work and its budgets -------------------------------------------------------------------------------------------

MAX_RECEIVE_BYTES = Integer(
    "TELEMETRY_GATEWAY_MAX_RECEIVE_BYTES",
    12 * MIB,
    minimum=64 * 1024,
    maximum=64 * MIB,
    unit="bytes",
    meaning=(
        "largest gRPC message accepted; above Pub/Sub's 10 MB so that an event too big to publish still arrives and "
        "is dead-lettered"
    ),
    read_by=GATEWAY,
)
PUBLISH_CONCURRENCY = Integer(
    "TELEMETRY_GATEWAY_PUBLISH_CONCURRENCY",
    4,
    minimum=1,
    maximum=64,
    meaning="events messages of one stream accepted at once",
    read_by=GATEWAY,
)
WORKERS = Integer(
    "TELEMETRY_GATEWAY_WORKERS",
    1,
    minimum=0,
    maximum=64,
    default_at_start=default_workers,
    shown_default="number of CPUs",
    meaning="worker processes publishing batches; `0`: threads in the gateway process (least memory, one CPU)",
    read_by=GATEWAY,
)
MAX_MESSAGE_BYTES = Integer(
    "TELEMETRY_GATEWAY_MAX_MESSAGE_BYTES",
    9_000_000,
    minimum=1024,
    maximum=PUBSUB_REQUEST_LIMIT,
    unit="bytes",
    meaning="largest Pub/Sub message (data plus attributes) published; bigger events are dead-lettered as `oversized`",
    read_by=GATEWAY,
)
MAX_INFLIGHT_BYTES = Integer(
    "TELEMETRY_GATEWAY_MAX_INFLIGHT_BYTES",
    64 * MIB,
    minimum=MIB,
    maximum=4096 * MIB,
    unit="bytes",
    meaning="request bytes of batches in flight, all streams together; a stream waits beyond it",
    read_by=GATEWAY,
)
PUBLISH_TIMEOUT = Seconds(
    "TELEMETRY_GATEWAY_PUBLISH_TIMEOUT",
    30.0,
    minimum=1.0,
    maximum=600.0,
    meaning="how long one PublishRequest is retried before its events are reported not recorded",
    read_by=GATEWAY,
)
PUBLISH_REQUESTS = Integer(
    "TELEMETRY_GATEWAY_PUBLISH_REQUESTS",
    4,
    minimum=1,
    maximum=64,
    meaning="PublishRequests (up to 1,000 events each) in flight to Pub/Sub at once, per gateway instance; more wait",
    read_by=GATEWAY,
)
MAX_OUTSTANDING_MESSAGES = Integer(
    "TELEMETRY_GATEWAY_PUBLISH_MAX_OUTSTANDING_MESSAGES",
    10_000,
    minimum=100,
    maximum=1_000_000,
    meaning="messages in PublishRequests in flight to Pub/Sub, per gateway instance; more wait",
    read_by=GATEWAY,
)
MAX_OUTSTANDING_BYTES = Integer(
    "TELEMETRY_GATEWAY_PUBLISH_MAX_OUTSTANDING_BYTES",
    64 * MIB,
    minimum=MIB,
    maximum=4096 * MIB,
    unit="bytes",
    meaning=(
        "bytes in PublishRequests in flight to Pub/Sub, per gateway instance; more wait; at least "
        "`TELEMETRY_GATEWAY_MAX_MESSAGE_BYTES`"
    ),
    read_by=GATEWAY,
)
HEALTH_INTERVAL = Seconds(
    "TELEMETRY_GATEWAY_HEALTH_INTERVAL",
    10.0,
    minimum=0.1,
    maximum=3600.0,
    meaning="how often the events topic is probed for health",
    read_by=GATEWAY,
)
SHUTDOWN_GRACE = Seconds(
    "TELEMETRY_GATEWAY_SHUTDOWN_GRACE",
    8.0,
    minimum=1.0,
    # Cloud Run sends SIGKILL about 10 s after SIGTERM: the whole stop has to fit well inside.
    maximum=9.0,
    meaning="time from SIGTERM to exit; Cloud Run kills the container 10 s after SIGTERM",
    read_by=GATEWAY,
)

# --- Limits at the edge (docs/gateway.md, "Limits at the edge") -----------------------------------------------------

HANDSHAKE_TIMEOUT = Seconds(
    "TELEMETRY_GATEWAY_HANDSHAKE_TIMEOUT",
    10.0,
    minimum=1.0,
    maximum=120.0,
    meaning="a new connection must finish the HTTP/2 preface within this",
    read_by=GATEWAY,
)
CONNECTION_IDLE_TIMEOUT = Seconds(
    "TELEMETRY_GATEWAY_CONNECTION_IDLE_TIMEOUT",
    60.0,
    minimum=1.0,
    maximum=3600.0,
    meaning="a connection without calls is closed after this",
    read_by=GATEWAY,
)
MAX_CONNECTION_AGE = Seconds(
    "TELEMETRY_GATEWAY_MAX_CONNECTION_AGE",
    3600.0,
    minimum=1.0,
    maximum=86400.0,
    meaning="every connection is told to go away (`GOAWAY`) at this age",
    read_by=GATEWAY,
)
MAX_CONNECTION_AGE_GRACE = Seconds(
    "TELEMETRY_GATEWAY_MAX_CONNECTION_AGE_GRACE",
    600.0,
    minimum=1.0,
    maximum=86400.0,
    meaning="... and closed, with its calls, this much later",
    read_by=GATEWAY,
)
KEEPALIVE_TIME = Seconds(
    "TELEMETRY_GATEWAY_KEEPALIVE_TIME",
    60.0,
    minimum=1.0,
    maximum=7200.0,
    meaning="a connection with calls but no traffic is pinged after this",
    read_by=GATEWAY,
)
KEEPALIVE_TIMEOUT = Seconds(
    "TELEMETRY_GATEWAY_KEEPALIVE_TIMEOUT",
    20.0,
    minimum=1.0,
    maximum=600.0,
    meaning="... and closed when the ping is not answered within this",
    read_by=GATEWAY,
)
MIN_CLIENT_PING_INTERVAL = Seconds(
    "TELEMETRY_GATEWAY_MIN_CLIENT_PING_INTERVAL",
    10.0,
    minimum=1.0,
    maximum=3600.0,
    meaning="clients pinging more often while no data flows are sent away at the third such ping",
    read_by=GATEWAY,
)
METADATA_TIMEOUT = Seconds(
    "TELEMETRY_GATEWAY_METADATA_TIMEOUT",
    10.0,
    minimum=0.5,
    maximum=120.0,
    meaning="a stream's metadata must come within this of its start",
    read_by=GATEWAY,
)
STREAM_IDLE_TIMEOUT = Seconds(
    "TELEMETRY_GATEWAY_STREAM_IDLE_TIMEOUT",
    60.0,
    minimum=0.5,
    maximum=3600.0,
    meaning="a stream owed nothing is closed after this without a message",
    read_by=GATEWAY,
)
MAX_QUEUE_WAIT = Seconds(
    "TELEMETRY_GATEWAY_MAX_QUEUE_WAIT",
    10.0,
    minimum=0.5,
    maximum=600.0,
    meaning=(
        "an accepted events message that cannot start within this ends its stream `RESOURCE_EXHAUSTED` "
        '"gateway busy", with a retry delay'
    ),
    read_by=GATEWAY,
)

DECLARED: tuple[Setting, ...] = (
    PORT,
    PROJECT,
    TOPIC,
    DEADLETTER_TOPIC,
    EMULATOR_HOST,
    ALLOWLIST,
    LICENSE_PUBLIC_KEYS,
    ALLOW_UNLICENSED,
    SERVICE_TOKENS,
    MAX_RECEIVE_BYTES,
    PUBLISH_CONCURRENCY,
    DEV_MODE,
    LOG_LEVEL,
    WORKERS,
    MAX_MESSAGE_BYTES,
    MAX_INFLIGHT_BYTES,
    PUBLISH_TIMEOUT,
    PUBLISH_REQUESTS,
    MAX_OUTSTANDING_MESSAGES,
    MAX_OUTSTANDING_BYTES,
    HEALTH_INTERVAL,
    SHUTDOWN_GRACE,
    HANDSHAKE_TIMEOUT,
    CONNECTION_IDLE_TIMEOUT,
    MAX_CONNECTION_AGE,
    MAX_CONNECTION_AGE_GRACE,
    KEEPALIVE_TIME,
    KEEPALIVE_TIMEOUT,
    MIN_CLIENT_PING_INTERVAL,
    METADATA_TIMEOUT,
    STREAM_IDLE_TIMEOUT,
    MAX_QUEUE_WAIT,
)


@dataclass(frozen=True)
class Settings:
    """Everything the gateway reads from its environment. The meaning of each field is in its declaration above."""

    port: int = PORT.default
    project: str = PROJECT.default
    topic: str = TOPIC.default  # full path projects/P/topics/T, or "" in development mode
    deadletter_topic: str = DEADLETTER_TOPIC.default  # full path, or "": invalid events are then logged instead
    emulator_host: str = EMULATOR_HOST.default
    allowlist: tuple[AllowlistEntry, ...] = ()
    license_public_keys: tuple[bytes, ...] = ()
    allow_unlicensed: bool = ALLOW_UNLICENSED.default
    service_tokens: tuple[ServiceToken, ...] = ()
    max_receive_bytes: int = MAX_RECEIVE_BYTES.default
    publish_concurrency: int = PUBLISH_CONCURRENCY.default
    publish_requests: int = PUBLISH_REQUESTS.default
    dev_mode: bool = DEV_MODE.default
    log_level: str = LOG_LEVEL.default.upper()
    workers: int = WORKERS.default  # from the environment: one per CPU when unset (WORKERS.default_at_start)
    max_message_bytes: int = MAX_MESSAGE_BYTES.default
    max_inflight_bytes: int = MAX_INFLIGHT_BYTES.default
    publish_timeout: float = PUBLISH_TIMEOUT.default
    max_outstanding_messages: int = MAX_OUTSTANDING_MESSAGES.default
    max_outstanding_bytes: int = MAX_OUTSTANDING_BYTES.default
    health_interval: float = HEALTH_INTERVAL.default
    shutdown_grace: float = SHUTDOWN_GRACE.default
    handshake_timeout: float = HANDSHAKE_TIMEOUT.default
    connection_idle_timeout: float = CONNECTION_IDLE_TIMEOUT.default
    max_connection_age: float = MAX_CONNECTION_AGE.default
    max_connection_age_grace: float = MAX_CONNECTION_AGE_GRACE.default
    keepalive_time: float = KEEPALIVE_TIME.default
    keepalive_timeout: float = KEEPALIVE_TIMEOUT.default
    min_client_ping_interval: float = MIN_CLIENT_PING_INTERVAL.default
    metadata_timeout: float = METADATA_TIMEOUT.default
    stream_idle_timeout: float = STREAM_IDLE_TIMEOUT.default
    max_queue_wait: float = MAX_QUEUE_WAIT.default

    @property
    def topic_short_name(self) -> str:
        return self.topic.rsplit("/", 1)[-1]


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Reads and checks every setting; raises SettingError naming the first bad variable."""
    env = os.environ if env is None else env
    dev_mode = DEV_MODE.read(env)
    project = PROJECT.read(env)
    topic = _topic_path(TOPIC.read(env), TOPIC.name, project, required=not dev_mode)
    deadletter = _topic_path(DEADLETTER_TOPIC.read(env), DEADLETTER_TOPIC.name, project, required=False)
    if topic and deadletter == topic:
        raise SettingError(f"{DEADLETTER_TOPIC.name} must not be the events topic itself")

    max_message_bytes = MAX_MESSAGE_BYTES.read(env)
    max_outstanding_bytes = MAX_OUTSTANDING_BYTES.read(env)
    if max_outstanding_bytes < max_message_bytes:
        # A budget smaller than one message would let every such message through alone, unbounded by it.
        raise SettingError(
            f"{MAX_OUTSTANDING_BYTES.name}={max_outstanding_bytes} must be at least "
            f"{MAX_MESSAGE_BYTES.name}={max_message_bytes}"
        )

    return Settings(
        port=PORT.read(env),
        project=project or (topic.split("/")[1] if topic else ""),
        topic=topic,
        deadletter_topic=deadletter,
        emulator_host=EMULATOR_HOST.read(env),
        allowlist=parse_allowlist(ALLOWLIST.read(env)),
        license_public_keys=_public_keys(LICENSE_PUBLIC_KEYS.read(env), LICENSE_PUBLIC_KEYS.name),
        allow_unlicensed=ALLOW_UNLICENSED.read(env),
        service_tokens=_service_tokens(SERVICE_TOKENS.read(env), SERVICE_TOKENS.name),
        max_receive_bytes=MAX_RECEIVE_BYTES.read(env),
        publish_concurrency=PUBLISH_CONCURRENCY.read(env),
        publish_requests=PUBLISH_REQUESTS.read(env),
        dev_mode=dev_mode,
        log_level=LOG_LEVEL.read(env).upper(),
        workers=WORKERS.read(env),
        max_message_bytes=max_message_bytes,
        max_inflight_bytes=MAX_INFLIGHT_BYTES.read(env),
        publish_timeout=PUBLISH_TIMEOUT.read(env),
        max_outstanding_messages=MAX_OUTSTANDING_MESSAGES.read(env),
        max_outstanding_bytes=max_outstanding_bytes,
        health_interval=HEALTH_INTERVAL.read(env),
        shutdown_grace=SHUTDOWN_GRACE.read(env),
        handshake_timeout=HANDSHAKE_TIMEOUT.read(env),
        connection_idle_timeout=CONNECTION_IDLE_TIMEOUT.read(env),
        max_connection_age=MAX_CONNECTION_AGE.read(env),
        max_connection_age_grace=MAX_CONNECTION_AGE_GRACE.read(env),
        keepalive_time=KEEPALIVE_TIME.read(env),
        keepalive_timeout=KEEPALIVE_TIMEOUT.read(env),
        min_client_ping_interval=MIN_CLIENT_PING_INTERVAL.read(env),
        metadata_timeout=METADATA_TIMEOUT.read(env),
        stream_idle_timeout=STREAM_IDLE_TIMEOUT.read(env),
        max_queue_wait=MAX_QUEUE_WAIT.read(env),
    )


def _topic_path(raw: str, name: str, project: str, required: bool) -> str:
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


def _public_keys(value: str, name: str) -> tuple[bytes, ...]:
    """Comma-separated base64 Ed25519 public keys: more than one lets keys rotate without a gap."""
    keys = []
    for position, item in enumerate(value.split(","), start=1):
        if not item.strip():
            continue
        try:
            keys.append(licensing.decode_public_key(item))
        except licensing.LicenseError as error:
            raise SettingError(f"{name}: key {position}: {error}") from None
    return tuple(keys)


def _service_tokens(value: str, name: str) -> tuple[ServiceToken, ...]:
    """Comma-separated SERVICE_ID=SHA256 entries: each token hash is bound to the one service ID it may name.

    A service ID may have several hashes (a token being rotated); a hash names one service only.
    """
    tokens: dict[str, ServiceToken] = {}
    for position, item in enumerate(value.split(","), start=1):
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
