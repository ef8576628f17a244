"""The Cloud Functions' HTTP entry points, called by Cloud Scheduler. Thin: the jobs live in telemetry_export.

Each runs its job on POST only (any other method: 405, nothing run), with a body of at most
64 KiB (413, refused as it streams); see telemetry_export.http_jobs.
"""

from __future__ import annotations

import flask
import functions_framework

from telemetry_export import http_jobs
from telemetry_export.cleanup import run_cleanup_job
from telemetry_export.export_job import run_export_job
from telemetry_export.queue_metrics import run_metrics_job


@functions_framework.http
def export_events(request: flask.Request) -> flask.Response:
    """Exports the queue to the gateway until it is empty or the time budget runs low.

    Body: empty, or `{"max_batches": N}`. Answers `{exported, failed, quarantined, batches,
    remaining, duration_s, stopped_because}`: 200 when the run made progress or had nothing to
    do, 503 when the gateway or the database could not be reached.
    """
    return http_jobs.handle(request, "export", run_export_job, allowed={"max_batches": int})


@functions_framework.http
def cleanup_exported_events(request: flask.Request) -> flask.Response:
    """Deletes rows exported longer ago than TELEMETRY_CLEANUP_RETENTION, and quarantined rows past theirs.

    Body: empty. Answers `{deleted, deleted_quarantined, remaining_eligible,
    remaining_eligible_quarantined, stopped_because, duration_s, ...}`: 200 after a run, even one
    cut short by its time budget; 503 when the database could not be reached.
    """
    return http_jobs.handle(request, "cleanup", run_cleanup_job)


@functions_framework.http
def report_queue_metrics(request: flask.Request) -> flask.Response:
    """Measures the export queue and writes its gauges to Cloud Monitoring (or the log, without a project).

    Body: empty. Answers the figures (`queue_backlog`, `queue_oldest_unexported_age_seconds`, ...)
    and `written_to`: 200 when written, 503 when the database or Cloud Monitoring failed.
    """
    return http_jobs.handle(request, "metrics", run_metrics_job)
