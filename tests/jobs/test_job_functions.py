"""cleanup_exported_events and report_queue_metrics through the real Functions Framework, as Scheduler calls them."""

from __future__ import annotations

import logging
from pathlib import Path

import functions_framework
import pytest
from google.api_core.exceptions import PermissionDenied

from .conftest import DAY, HOUR

MAIN = str(Path(__file__).resolve().parents[2] / "functions" / "main.py")


def client_for(target: str):
    return functions_framework.create_app(target=target, source=MAIN).test_client()


def run_lines(caplog, job: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "telemetry_export.http_jobs" and getattr(r, "job", None) == job]


def test_cleanup_honours_the_retention_window_from_the_environment_and_logs_its_counts(job_env, conn, queue, caplog):
    job_env.setenv("TELEMETRY_CLEANUP_RETENTION", "2h")
    queue.add("exported 1h ago", age=2 * HOUR, exported_ago=HOUR)
    queue.add("exported 3h ago", 2, age=4 * HOUR, exported_ago=3 * HOUR)
    queue.add("quarantined 31 days ago", age=32 * DAY, quarantined_ago=31 * DAY)
    caplog.set_level(logging.INFO, logger="telemetry_export.http_jobs")

    response = client_for("cleanup_exported_events").post("/")

    assert response.status_code == 200
    body = response.get_json()
    assert {key: body[key] for key in ("deleted", "deleted_quarantined", "remaining_eligible", "stopped_because")} == {
        "deleted": 2,
        "deleted_quarantined": 1,
        "remaining_eligible": 0,
        "stopped_because": "nothing left",
    }
    assert body["retention_seconds"] == 2 * HOUR
    assert queue.labels() == {"exported 1h ago": 1}
    [line] = run_lines(caplog, "cleanup")
    assert (line.deleted, line.deleted_quarantined, line.levelname) == (2, 1, "INFO")


def test_cleanup_refuses_options_it_does_not_have(job_env, conn, queue):
    queue.add("exported 25h ago", age=DAY + 2 * HOUR, exported_ago=25 * HOUR)

    response = client_for("cleanup_exported_events").post("/", json={"retention": "1s"})

    assert response.status_code == 400
    assert "unknown option(s) retention" in response.get_json()["error"]
    assert queue.labels() == {"exported 25h ago": 1}


def test_metrics_are_written_to_cloud_monitoring_when_a_project_is_configured(
    job_env, conn, queue, monitoring_client, caplog
):
    job_env.setenv("GOOGLE_CLOUD_PROJECT", "acme-telemetry")
    job_env.setenv("TELEMETRY_METRICS_TASK_ID", "instance-7")
    job_env.setenv("TELEMETRY_METRICS_LOCATION", "europe-west1")
    queue.add("waiting", 3, age=300)
    queue.add("exported", 6, age=HOUR, exported_ago=1800)
    caplog.set_level(logging.INFO, logger="telemetry_export.http_jobs")

    response = client_for("report_queue_metrics").post("/")

    assert response.status_code == 200
    body = response.get_json()
    assert (body["queue_backlog"], body["exported_last_hour"], body["written_to"]) == (3, 6, "cloud_monitoring")
    assert body["queue_estimated_drain_seconds"] == 1800.0
    [request] = monitoring_client.requests
    assert request.name == "projects/acme-telemetry"
    assert [series.metric.type for series in request.time_series] == [
        f"custom.googleapis.com/telemetry_export/{name}"
        for name in (
            "queue_backlog",
            "queue_oldest_unexported_age_seconds",
            "queue_in_flight",
            "queue_quarantined",
            "queue_exported_retained",
            "exported_last_hour",
            "queue_estimated_drain_seconds",
        )
    ]
    assert dict(request.time_series[0].resource.labels) == {
        "project_id": "acme-telemetry",
        "location": "europe-west1",
        "namespace": "telemetry-export",
        "job": "report_queue_metrics",
        "task_id": "instance-7",
    }
    [line] = run_lines(caplog, "metrics")
    assert line.queue_backlog == 3


def test_metrics_without_a_project_are_logged_and_build_no_client(job_env, conn, queue, monitoring_client):
    queue.add("quarantined", quarantined_ago=60)

    response = client_for("report_queue_metrics").post("/")

    assert response.status_code == 200
    assert response.get_json()["written_to"] == "log"
    assert response.get_json()["queue_quarantined"] == 1
    assert monitoring_client.built == 0


@pytest.mark.parametrize("target", ["export_events", "cleanup_exported_events", "report_queue_metrics"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_only_post_runs_a_job_other_methods_get_405(job_env, target, method, caplog):
    caplog.set_level(logging.INFO, logger="telemetry_export.http_jobs")

    response = client_for(target).open("/", method=method)

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert response.get_json() == {"error": f"method {method} not allowed; use POST"}
    assert run_lines(caplog, "export") + run_lines(caplog, "cleanup") + run_lines(caplog, "metrics") == []


def test_a_refused_monitoring_write_answers_503_so_scheduler_and_alerts_see_it(
    job_env, conn, monitoring_client, caplog
):
    job_env.setenv("GOOGLE_CLOUD_PROJECT", "acme-telemetry")
    monitoring_client.error = PermissionDenied("monitoring.timeSeries.create denied")
    caplog.set_level(logging.INFO, logger="telemetry_export.http_jobs")

    response = client_for("report_queue_metrics").post("/")

    assert response.status_code == 503
    assert "timeSeries.create denied" in response.get_json()["error"]
    [line] = run_lines(caplog, "metrics")
    assert line.levelname == "ERROR"
