"""Gateway settings: documented defaults, and a bad value fails at start naming its variable."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from gateway_run import settings as settings_module
from gateway_run.settings import ServiceToken, Settings, default_workers, from_env
from telemetry_events.envvars import SettingError

MINIMAL = {"GOOGLE_CLOUD_PROJECT": "p-1", "TELEMETRY_PUBSUB_TOPIC": "events"}
KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # standard base64 of the bytes 0, 1, ..., 31
KEY_URLSAFE = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
TOKEN_HASH = "3c469e9d6c5875d37a43f353d4f88e61fcf812c66eee3457465a40b0da4153e0"  # SHA-256 of "token"


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Pretends to be a machine with `cpus` CPUs and the cgroup CPU limit `cpu_max` (None: no cgroup v2 file)."""

    def pretend(cpus: int, cpu_max: str | None) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
        path = tmp_path / "cpu.max"
        if cpu_max is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(cpu_max + "\n")
        monkeypatch.setattr(settings_module, "CPU_MAX_FILE", str(path))

    return pretend


def test_defaults(machine) -> None:
    machine(3, "max 100000")

    settings = from_env(MINIMAL)

    assert settings == Settings(port=8080, project="p-1", topic="projects/p-1/topics/events", workers=3)
    assert (settings.max_receive_bytes, settings.publish_concurrency, settings.shutdown_grace) == (12 << 20, 4, 8.0)
    assert not settings.allow_unlicensed and not settings.dev_mode and settings.log_level == "INFO"
    assert settings.service_tokens == () and settings.license_public_keys == ()


def test_the_edge_limits_have_their_documented_defaults(machine) -> None:
    machine(1, None)

    settings = from_env(MINIMAL)

    assert (settings.handshake_timeout, settings.connection_idle_timeout) == (10.0, 60.0)
    assert (settings.max_connection_age, settings.max_connection_age_grace) == (3600.0, 600.0)
    assert (settings.keepalive_time, settings.keepalive_timeout, settings.min_client_ping_interval) == (
        60.0,
        20.0,
        10.0,
    )
    assert (settings.metadata_timeout, settings.stream_idle_timeout, settings.max_queue_wait) == (10.0, 60.0, 10.0)


@pytest.mark.parametrize(
    ("cpus", "cpu_max", "workers"),
    [
        (8, None, 8),  # no cgroup v2: the CPUs this process may run on
        (8, "max 100000", 8),  # no quota
        (32, "100000 100000", 1),  # a container of 1 CPU on a big host
        (8, "150000 100000", 2),  # 1.5 CPUs: rounded up
        (2, "400000 100000", 2),  # a quota above the affinity: the affinity
        (4, "garbage", 4),  # unreadable: the affinity stands
        (1, "50000 100000", 1),  # half a CPU: still one worker
    ],
)
def test_default_workers_follow_the_cpus_this_process_may_use(machine, cpus: int, cpu_max: str | None, workers: int):
    machine(cpus, cpu_max)

    assert default_workers() == workers


def test_every_setting_is_read() -> None:
    settings = from_env(
        {
            "PORT": "9090",
            "GOOGLE_CLOUD_PROJECT": "p-1",
            "TELEMETRY_PUBSUB_TOPIC": "projects/other/topics/events",
            "TELEMETRY_PUBSUB_DEADLETTER_TOPIC": "dead",
            "PUBSUB_EMULATOR_HOST": "localhost:8085",
            "TELEMETRY_ALLOWLIST": "search::*::query",
            "TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY": f"{KEY}, {KEY_URLSAFE}",
            "TELEMETRY_GATEWAY_ALLOW_UNLICENSED": "true",
            "TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256": (
                f"cody-gateway={'A' * 64}, cody-gateway={'c' * 64},analytics={'b' * 64}"
            ),
            "TELEMETRY_GATEWAY_MAX_RECEIVE_BYTES": "2097152",
            "TELEMETRY_GATEWAY_PUBLISH_CONCURRENCY": "8",
            "TELEMETRY_GATEWAY_DEV_MODE": "false",
            "LOG_LEVEL": "debug",
            "TELEMETRY_GATEWAY_WORKERS": "0",
            "TELEMETRY_GATEWAY_MAX_MESSAGE_BYTES": "5000000",
            "TELEMETRY_GATEWAY_MAX_INFLIGHT_BYTES": "33554432",
            "TELEMETRY_GATEWAY_PUBLISH_TIMEOUT": "1m",
            "TELEMETRY_GATEWAY_PUBLISH_MAX_OUTSTANDING_MESSAGES": "5000",
            "TELEMETRY_GATEWAY_PUBLISH_MAX_OUTSTANDING_BYTES": "16777216",
            "TELEMETRY_GATEWAY_HEALTH_INTERVAL": "2s",
            "TELEMETRY_GATEWAY_SHUTDOWN_GRACE": "5",
            "TELEMETRY_GATEWAY_HANDSHAKE_TIMEOUT": "3s",
            "TELEMETRY_GATEWAY_CONNECTION_IDLE_TIMEOUT": "2m",
            "TELEMETRY_GATEWAY_MAX_CONNECTION_AGE": "2h",
            "TELEMETRY_GATEWAY_MAX_CONNECTION_AGE_GRACE": "90",
            "TELEMETRY_GATEWAY_KEEPALIVE_TIME": "30s",
            "TELEMETRY_GATEWAY_KEEPALIVE_TIMEOUT": "5",
            "TELEMETRY_GATEWAY_MIN_CLIENT_PING_INTERVAL": "20s",
            "TELEMETRY_GATEWAY_METADATA_TIMEOUT": "2.5",
            "TELEMETRY_GATEWAY_STREAM_IDLE_TIMEOUT": "45s",
            "TELEMETRY_GATEWAY_MAX_QUEUE_WAIT": "4s",
        }
    )

    assert settings.port == 9090 and settings.project == "p-1"
    assert settings.topic == "projects/other/topics/events"
    assert settings.deadletter_topic == "projects/p-1/topics/dead"
    assert settings.emulator_host == "localhost:8085"
    assert [(e.feature, e.action, e.keys) for e in settings.allowlist] == [("search", "*", frozenset({"query"}))]
    assert settings.license_public_keys == (bytes(range(32)), bytes(range(32)))
    assert settings.allow_unlicensed
    assert settings.service_tokens == (
        ServiceToken("a" * 64, "cody-gateway"),
        ServiceToken("c" * 64, "cody-gateway"),
        ServiceToken("b" * 64, "analytics"),
    )
    assert (settings.max_receive_bytes, settings.publish_concurrency, settings.workers) == (2097152, 8, 0)
    assert settings.log_level == "DEBUG"
    assert (settings.max_message_bytes, settings.max_inflight_bytes) == (5_000_000, 32 << 20)
    assert (settings.publish_timeout, settings.health_interval, settings.shutdown_grace) == (60.0, 2.0, 5.0)
    assert (settings.max_outstanding_messages, settings.max_outstanding_bytes) == (5000, 16 << 20)
    assert (settings.handshake_timeout, settings.connection_idle_timeout) == (3.0, 120.0)
    assert (settings.max_connection_age, settings.max_connection_age_grace) == (7200.0, 90.0)
    assert (settings.keepalive_time, settings.keepalive_timeout, settings.min_client_ping_interval) == (30.0, 5.0, 20.0)
    assert (settings.metadata_timeout, settings.stream_idle_timeout, settings.max_queue_wait) == (2.5, 45.0, 4.0)


def test_development_mode_needs_no_pubsub() -> None:
    settings = from_env({"TELEMETRY_GATEWAY_DEV_MODE": "yes"})

    assert settings.dev_mode and settings.topic == "" and settings.project == ""


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PORT": "http"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"TELEMETRY_PUBSUB_TOPIC": ""}, "TELEMETRY_PUBSUB_TOPIC"),
        ({"TELEMETRY_PUBSUB_TOPIC": "a b"}, "TELEMETRY_PUBSUB_TOPIC"),
        ({"TELEMETRY_PUBSUB_TOPIC": "goog-events"}, "TELEMETRY_PUBSUB_TOPIC"),
        ({"GOOGLE_CLOUD_PROJECT": ""}, "GOOGLE_CLOUD_PROJECT"),
        ({"TELEMETRY_PUBSUB_DEADLETTER_TOPIC": "events"}, "TELEMETRY_PUBSUB_DEADLETTER_TOPIC"),
        ({"TELEMETRY_ALLOWLIST": "search::"}, "TELEMETRY_ALLOWLIST"),
        ({"TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY": "not base64!"}, "TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY"),
        ({"TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY": "c2hvcnQ="}, "TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY"),
        ({"TELEMETRY_GATEWAY_ALLOW_UNLICENSED": "maybe"}, "TELEMETRY_GATEWAY_ALLOW_UNLICENSED"),
        ({"TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256": "secret-token"}, "TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256"),
        (
            {"TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256": TOKEN_HASH},
            "TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256: entry 1 is not",
        ),
        (
            {"TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256": "svc=secret"},
            "TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256: entry 1 has",
        ),
        ({"TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256": f"={TOKEN_HASH}"}, "TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256"),
        ({"TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256": f"bad id={TOKEN_HASH}"}, "TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256"),
        ({"TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256": f"a,b={TOKEN_HASH}"}, "TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256"),
        ({"TELEMETRY_GATEWAY_MAX_RECEIVE_BYTES": "1000"}, "TELEMETRY_GATEWAY_MAX_RECEIVE_BYTES"),
        ({"TELEMETRY_GATEWAY_PUBLISH_CONCURRENCY": "0"}, "TELEMETRY_GATEWAY_PUBLISH_CONCURRENCY"),
        ({"TELEMETRY_GATEWAY_DEV_MODE": "sometimes"}, "TELEMETRY_GATEWAY_DEV_MODE"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"TELEMETRY_GATEWAY_WORKERS": "-1"}, "TELEMETRY_GATEWAY_WORKERS"),
        ({"TELEMETRY_GATEWAY_MAX_MESSAGE_BYTES": "20000000"}, "TELEMETRY_GATEWAY_MAX_MESSAGE_BYTES"),
        ({"TELEMETRY_GATEWAY_MAX_INFLIGHT_BYTES": "1"}, "TELEMETRY_GATEWAY_MAX_INFLIGHT_BYTES"),
        ({"TELEMETRY_GATEWAY_PUBLISH_TIMEOUT": "forever"}, "TELEMETRY_GATEWAY_PUBLISH_TIMEOUT"),
        ({"TELEMETRY_GATEWAY_PUBLISH_MAX_OUTSTANDING_MESSAGES": "10"}, "PUBLISH_MAX_OUTSTANDING_MESSAGES"),
        ({"TELEMETRY_GATEWAY_PUBLISH_MAX_OUTSTANDING_BYTES": "2097152"}, "PUBLISH_MAX_OUTSTANDING_BYTES"),
        ({"TELEMETRY_GATEWAY_HEALTH_INTERVAL": "0"}, "TELEMETRY_GATEWAY_HEALTH_INTERVAL"),
        ({"TELEMETRY_GATEWAY_SHUTDOWN_GRACE": "30s"}, "TELEMETRY_GATEWAY_SHUTDOWN_GRACE"),
        ({"TELEMETRY_GATEWAY_HANDSHAKE_TIMEOUT": "0.5"}, "TELEMETRY_GATEWAY_HANDSHAKE_TIMEOUT"),
        ({"TELEMETRY_GATEWAY_HANDSHAKE_TIMEOUT": "3m"}, "TELEMETRY_GATEWAY_HANDSHAKE_TIMEOUT"),
        ({"TELEMETRY_GATEWAY_CONNECTION_IDLE_TIMEOUT": "2h"}, "TELEMETRY_GATEWAY_CONNECTION_IDLE_TIMEOUT"),
        ({"TELEMETRY_GATEWAY_MAX_CONNECTION_AGE": "0"}, "TELEMETRY_GATEWAY_MAX_CONNECTION_AGE"),
        ({"TELEMETRY_GATEWAY_MAX_CONNECTION_AGE_GRACE": "2d"}, "TELEMETRY_GATEWAY_MAX_CONNECTION_AGE_GRACE"),
        ({"TELEMETRY_GATEWAY_KEEPALIVE_TIME": "3h"}, "TELEMETRY_GATEWAY_KEEPALIVE_TIME"),
        ({"TELEMETRY_GATEWAY_KEEPALIVE_TIMEOUT": "soon"}, "TELEMETRY_GATEWAY_KEEPALIVE_TIMEOUT"),
        ({"TELEMETRY_GATEWAY_MIN_CLIENT_PING_INTERVAL": "0.1"}, "TELEMETRY_GATEWAY_MIN_CLIENT_PING_INTERVAL"),
        ({"TELEMETRY_GATEWAY_METADATA_TIMEOUT": "0.1"}, "TELEMETRY_GATEWAY_METADATA_TIMEOUT"),
        ({"TELEMETRY_GATEWAY_METADATA_TIMEOUT": "5m"}, "TELEMETRY_GATEWAY_METADATA_TIMEOUT"),
        ({"TELEMETRY_GATEWAY_STREAM_IDLE_TIMEOUT": "2h"}, "TELEMETRY_GATEWAY_STREAM_IDLE_TIMEOUT"),
        ({"TELEMETRY_GATEWAY_MAX_QUEUE_WAIT": "0"}, "TELEMETRY_GATEWAY_MAX_QUEUE_WAIT"),
        ({"TELEMETRY_GATEWAY_MAX_QUEUE_WAIT": "11m"}, "TELEMETRY_GATEWAY_MAX_QUEUE_WAIT"),
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingError, match=variable):
        from_env({**MINIMAL, **env})


def test_a_token_hash_is_bound_to_one_service_id() -> None:
    assert hashlib.sha256(b"token").hexdigest() == TOKEN_HASH
    variable = "TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256"

    settings = from_env({**MINIMAL, variable: f" cody-gateway = {TOKEN_HASH.upper()} ,"})
    assert settings.service_tokens == (ServiceToken(TOKEN_HASH, "cody-gateway"),)

    with pytest.raises(SettingError, match=f"{variable}: entry 2 binds a token hash .* already bound to 'a'"):
        from_env({**MINIMAL, variable: f"a={TOKEN_HASH},b={TOKEN_HASH}"})


@pytest.mark.parametrize("kind", ["licensed_instance", "unlicensed_instance", "managed_service", "Licensed_Instance"])
def test_a_token_cannot_be_bound_to_an_identifier_kind(kind: str) -> None:
    with pytest.raises(SettingError, match=r"TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256: entry 1: .*identifier kind"):
        from_env({**MINIMAL, "TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256": f"{kind}={TOKEN_HASH}"})


def test_the_old_bare_hash_format_is_refused_with_the_new_format_named() -> None:
    with pytest.raises(SettingError) as refused:
        from_env({**MINIMAL, "TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256": TOKEN_HASH})

    assert "TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256: entry 1 is not SERVICE_ID=SHA256" in str(refused.value)
