"""`telemetry-export export`: one run, or --drain until the backlog is empty."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from localdev.scripted_gateway import ScriptedGateway

from .conftest import queue_states, record_samples

CLI = str(Path(sys.executable).with_name("telemetry-export"))


def _run(database_url: str, gateway_url: str, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TELEMETRY_GATEWAY_ADDR": gateway_url,
        "TELEMETRY_INSTANCE_ID": "test-instance",
        **env,
    }
    return subprocess.run([CLI, "export", *argv], env=full_env, capture_output=True, text=True, timeout=120)


def test_one_run_stops_at_its_batch_limit_and_drain_finishes_the_backlog(conn, database_url):
    record_samples(conn, 1_000, seed=41)
    gateway = ScriptedGateway().start()
    try:
        once = _run(database_url, gateway.url, "--max-batches", "2", TELEMETRY_EXPORT_BATCH_SIZE="200")
        assert once.returncode == 0, once.stderr
        first = json.loads(once.stdout)
        assert (first["exported"], first["remaining"], first["stopped_because"]) == (400, 600, "batch limit reached")

        drained = _run(database_url, gateway.url, "--drain", "--max-batches", "2", TELEMETRY_EXPORT_BATCH_SIZE="200")
        assert drained.returncode == 0, drained.stderr
        total = json.loads(drained.stdout)
        assert (total["exported"], total["remaining"], total["batches"]) == (600, 0, 3)  # two runs: 2 + 1
    finally:
        gateway.stop()
    assert queue_states(conn)["exported"] == 1_000


def test_an_unreachable_gateway_exits_non_zero_with_the_reason(conn, database_url):
    record_samples(conn, 10, seed=42)
    result = _run(database_url, "http://127.0.0.1:1")
    assert result.returncode == 1
    assert json.loads(result.stdout)["stopped_because"].startswith("gateway unavailable")


def test_a_missing_gateway_address_is_a_one_line_error(database_url):
    result = _run(database_url, "")
    assert result.returncode == 2
    assert (
        result.stderr
        == "telemetry-export: error: TELEMETRY_GATEWAY_ADDR is not set: the exporter needs the gateway's address\n"
    )
