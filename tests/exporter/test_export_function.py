"""`export_events` under the real functions-framework, called over HTTP as Cloud Scheduler does."""

from __future__ import annotations

import json

import pytest

from localdev.functions import start_function
from localdev.ports import free_port

from .conftest import message_body, queue_states, record_samples


@pytest.fixture
def function_env(database_url, live_gateway) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "TELEMETRY_GATEWAY_ADDR": live_gateway.url,
        "TELEMETRY_LICENSE_KEY": live_gateway.license_key,
        "TELEMETRY_INSTANCE_ID": "test-instance",
        "TELEMETRY_EXTERNAL_URL": "https://sourcegraph.example.com",
        "TELEMETRY_EXPORT_FUNCTION_TIMEOUT": "120",
    }


def test_twenty_thousand_recorded_events_become_twenty_thousand_redacted_messages(conn, live_gateway, function_env):
    ids = record_samples(conn, 20_000, seed=21)
    with start_function("export_events", function_env) as function:
        status, summary = function.call()
        assert status == 200, (summary, function.log_tail())
    assert summary["exported"] == 20_000 and summary["remaining"] == 0 and summary["failed"] == 0
    assert summary["stopped_because"] == "backlog empty"
    assert set(summary) == {
        "exported",
        "failed",
        "quarantined",
        "withheld",
        "batches",
        "remaining",
        "duration_s",
        "stopped_because",
    }
    assert queue_states(conn) == {"exported": 20_000, "quarantined": 0, "waiting": 0, "leased": 0}

    messages = live_gateway.pull(20_000, timeout=180)
    received = [m.attributes["event.id"] for m in messages]
    assert len(received) == 20_000 and set(received) == set(ids)
    for message in messages:
        body = message_body(message)
        event = body["event"]
        assert "marketingTracking" not in event
        assert set(event["parameters"].get("privateMetadata", {})) <= {"testField"}
        assert live_gateway.license_key not in message.data.decode()
        assert body["metadata"]["identifier"]["licensedInstance"]["instanceId"] == "test-instance"


def test_a_second_call_with_nothing_to_do_is_a_success(conn, function_env):
    with start_function("export_events", function_env) as function:
        status, summary = function.call()
    assert status == 200 and summary["exported"] == 0 and summary["stopped_because"] == "backlog empty"


def test_bad_requests_are_refused_with_a_reason(conn, function_env):
    record_samples(conn, 10, seed=22)
    with start_function("export_events", function_env) as function:
        status, body = function.call(b"{not json")
        assert status == 400 and body["error"].startswith("body is not JSON")
        assert function.call(b"[1]") == (400, {"error": "body must be a JSON object, got list"})
        status, body = function.call(json.dumps({"batches": 1}).encode())
        assert status == 400 and body["error"].startswith("unknown option(s) batches")
        assert function.call(json.dumps({"max_batches": "2"}).encode()) == (
            400,
            {"error": "option max_batches must be int, got str"},
        )
        assert function.call(json.dumps({"max_batches": 0}).encode()) == (
            400,
            {"error": "option max_batches must be at least 1"},
        )
        status, body = function.call(b"x" * 100_000)
        assert status == 413 and "over the 65536 byte limit" in body["error"]
        status, body = function.call(method="PUT")
        assert status == 405
    assert queue_states(conn)["exported"] == 0  # none of that ran the job


def test_an_unreachable_gateway_is_a_503_and_loses_nothing(conn, function_env):
    record_samples(conn, 50, seed=23)
    env = {**function_env, "TELEMETRY_GATEWAY_ADDR": f"http://127.0.0.1:{free_port()}"}
    with start_function("export_events", env) as function:
        status, summary = function.call()
    assert status == 503 and summary["stopped_because"].startswith("gateway unavailable")
    assert summary["remaining"] == 50
    assert queue_states(conn) == {"exported": 0, "quarantined": 0, "waiting": 50, "leased": 0}


def test_an_unreachable_database_is_a_503(function_env):
    env = {**function_env, "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/telemetry"}
    with start_function("export_events", env) as function:
        status, body = function.call()
    assert status == 503 and body["error"].startswith("database unavailable")
