"""Gateway settings: documented defaults, and a bad value fails at start naming its variable."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest

from gateway_run.settings import Settings, default_workers, from_env
from telemetry_events.envvars import SettingError

MINIMAL = {"GOOGLE_CLOUD_PROJECT": "p-1", "TELEMETRY_PUBSUB_TOPIC": "events"}
KEY = base64.b64encode(bytes(range(32))).decode()


def test_defaults() -> None:
    settings = from_env(MINIMAL)

    assert settings == Settings(
        port=8080,
        project="p-1",
        topic="projects/p-1/topics/events",
        workers=default_workers(),
    )
    assert (settings.max_receive_bytes, settings.publish_concurrency, settings.shutdown_grace) == (12 << 20, 4, 8.0)
    assert not settings.allow_unlicensed and not settings.dev_mode and settings.log_level == "INFO"


def test_every_setting_is_read() -> None:
    settings = from_env(
        {
            "PORT": "9090",
            "GOOGLE_CLOUD_PROJECT": "p-1",
            "TELEMETRY_PUBSUB_TOPIC": "projects/other/topics/events",
            "TELEMETRY_PUBSUB_DEADLETTER_TOPIC": "dead",
            "PUBSUB_EMULATOR_HOST": "localhost:8085",
            "TELEMETRY_ALLOWLIST": "search::*::query",
            "TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY": f"{KEY}, {KEY.rstrip('=')}",
            "TELEMETRY_GATEWAY_ALLOW_UNLICENSED": "true",
            "TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256": f"{'A' * 64},{'b' * 64}",
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
        }
    )

    assert settings.port == 9090 and settings.project == "p-1"
    assert settings.topic == "projects/other/topics/events"
    assert settings.deadletter_topic == "projects/p-1/topics/dead"
    assert settings.emulator_host == "localhost:8085"
    assert [(e.feature, e.action, e.keys) for e in settings.allowlist] == [("search", "*", frozenset({"query"}))]
    assert settings.license_public_keys == (bytes(range(32)), bytes(range(32)))
    assert settings.allow_unlicensed
    assert settings.service_token_sha256 == frozenset({"a" * 64, "b" * 64})
    assert (settings.max_receive_bytes, settings.publish_concurrency, settings.workers) == (2097152, 8, 0)
    assert settings.log_level == "DEBUG"
    assert (settings.max_message_bytes, settings.max_inflight_bytes) == (5_000_000, 32 << 20)
    assert (settings.publish_timeout, settings.health_interval, settings.shutdown_grace) == (60.0, 2.0, 5.0)
    assert (settings.max_outstanding_messages, settings.max_outstanding_bytes) == (5000, 16 << 20)


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
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingError, match=variable):
        from_env({**MINIMAL, **env})


def test_token_hashes_are_hashes_not_tokens() -> None:
    token_hash = hashlib.sha256(b"token").hexdigest()

    assert from_env({**MINIMAL, "TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256": token_hash}).service_token_sha256 == {
        token_hash
    }


def test_every_variable_the_gateway_reads_is_documented() -> None:
    documentation = (Path(__file__).parents[2] / "docs" / "gateway.md").read_text()
    source = (Path(__file__).parents[2] / "gateway_run" / "settings.py").read_text()

    variables = set(re.findall(r'"((?:TELEMETRY|GOOGLE|PUBSUB|LOG|PORT)[A-Z0-9_]*)"', source))
    assert len(variables) >= 20
    for variable in sorted(variables):
        assert f"`{variable}`" in documentation, f"{variable} is missing from docs/gateway.md"
