"""The README's first command: the main job end to end on real local services."""

from __future__ import annotations

import subprocess
import sys

import pytest

from localdev.pubsub_emulator import EmulatorUnavailable, emulator_command

SERVICES = "gateway_run|functions-framework|pubsub-emulator|postgres -D /tmp/telemetry-pg-"


def _service_pids() -> set[str]:
    return set(subprocess.run(["pgrep", "-f", SERVICES], capture_output=True, text=True).stdout.split())


def test_the_demo_publishes_every_recorded_event_and_stops_what_it_started():
    try:
        emulator_command("127.0.0.1:1")
    except EmulatorUnavailable as error:
        pytest.skip(str(error))
    before = _service_pids()
    result = subprocess.run(
        [sys.executable, "-m", "localdev.demo", "--events", "300", "--show", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    for expected in ("recorded     300", "exported     300", "published    300", "quarantined  0", "backlog      0"):
        assert expected in lines
    published = [line for line in lines if line.startswith('{"action"')]
    assert len(published) == 1 and "marketingTracking" not in published[0]
    assert _service_pids() <= before  # nothing the demo started is left running
