"""The arrows between layers: doors (HTTP functions, command line) import jobs, never the other way."""

from __future__ import annotations

import subprocess
import sys

JOB_MODULES = (
    "telemetry_export.cleanup",
    "telemetry_export.queue_metrics",
    "telemetry_export.export_job",
    "telemetry_export.exporter",
    "telemetry_export.recording",
)


def loaded_after_importing(modules: tuple[str, ...], watched: tuple[str, ...]) -> list[str]:
    code = f"import sys; import {', '.join(modules)}; print(','.join(m for m in {watched!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [name for name in result.stdout.strip().split(",") if name]


def test_jobs_do_not_import_the_http_layer() -> None:
    assert loaded_after_importing(JOB_MODULES, ("flask", "functions_framework", "telemetry_export.http_jobs")) == []


def test_the_http_layer_does_import_flask_so_the_check_above_can_fail() -> None:
    assert loaded_after_importing(("telemetry_export.http_jobs",), ("flask",)) == ["flask"]
