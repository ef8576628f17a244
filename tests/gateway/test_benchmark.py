"""The throughput benchmark still runs and prints its figures (tiny sizes: a smoke test, not a measurement)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.benchmark
def test_the_gateway_benchmark_runs_and_prints_its_figures() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.gateway_throughput", "--events", "3000", "--batch", "500", "--rounds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert completed.returncode == 0, completed.stderr[-2000:]
    for figure in (
        r"gateway\s+\d+ events/s",
        r"L_ps\s+\d+ msgs/s",
        r"L_raw\s+\d+ msgs/s",
        r"gateway / L_ps\s+\d+\.\d\d",
        r"gateway main process\s+\d+\.\d µs per event",
        r"gateway workers\s+\d+\.\d µs per event",
        r"Pub/Sub emulator\s+\d+\.\d µs per event",
    ):
        assert re.search(figure, completed.stdout), f"no {figure!r} in:\n{completed.stdout}"
