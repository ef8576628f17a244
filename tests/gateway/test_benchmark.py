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
    assert re.search(r"via RecordEvents\s+\d+ events/s", completed.stdout)
    assert re.search(r"direct publish\s+\d+ events/s", completed.stdout)
    assert re.search(r"ratio\s+\d\.\d\d", completed.stdout)
