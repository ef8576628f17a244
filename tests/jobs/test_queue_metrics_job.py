"""Queue figures against a real Postgres, and the exact Cloud Monitoring request they become."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
from google.api import metric_pb2
from google.api_core.exceptions import ServiceUnavailable
from google.cloud import monitoring_v3

from telemetry_events.logs import JsonFormatter
from telemetry_export import monitoring
from telemetry_export.monitoring import CloudMonitoringSink, Gauge
from telemetry_export.queue_metrics import QueueHealth, measure, report, run_metrics_job
from telemetry_export.settings import MetricsSettings, Settings

from .conftest import HOUR

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def known_queue(queue) -> None:
    """7 rows waiting (1 in flight, 1 with an expired lease), 2 quarantined, 9 exported (4 in the last hour)."""
    queue.add("waiting longest", 3, age=600, at=AT)
    queue.add("waiting", 2, age=60, at=AT)
    queue.add("in flight", age=120, leased_for=300, at=AT)
    queue.add("lease expired", age=30, leased_for=-60, at=AT)
    # Older than anything waiting: poison rows must count neither in the backlog nor in its age.
    queue.add("quarantined", 2, age=9000, quarantined_ago=8000, at=AT)
    queue.add("exported recently", 4, age=1200, exported_ago=600, at=AT)
    queue.add("exported 2h ago", 5, age=3 * HOUR, exported_ago=2 * HOUR, at=AT)


def test_figures_of_a_known_queue_state(conn, known_queue):
    health = measure(conn, at=AT)

    assert health == QueueHealth(
        measured_at=AT,
        backlog=7,
        oldest_unexported_age_seconds=600,
        in_flight=1,
        quarantined=2,
        exported_retained=9,
        exported_last_hour=4,
        estimated_drain_seconds=7 * 3600 / 4,
    )


def test_an_empty_queue_has_zero_age_and_nothing_to_drain(conn):
    health = measure(conn)

    assert health.figures() == {
        "queue_backlog": 0,
        "queue_oldest_unexported_age_seconds": 0,
        "queue_in_flight": 0,
        "queue_quarantined": 0,
        "queue_exported_retained": 0,
        "exported_last_hour": 0,
        "queue_estimated_drain_seconds": 0.0,
    }
    assert abs(health.measured_at - datetime.now(UTC)).total_seconds() < 60


def test_the_drain_estimate_is_unknown_and_not_written_when_nothing_was_exported_lately(conn, queue):
    queue.add("waiting", 5, age=HOUR, at=AT)
    queue.add("exported 2h ago", 3, age=3 * HOUR, exported_ago=2 * HOUR, at=AT)

    health = measure(conn, at=AT)

    assert health.estimated_drain_seconds is None
    assert health.oldest_unexported_age_seconds == 3600
    assert "queue_estimated_drain_seconds" not in [gauge.name for gauge in health.gauges()]


def test_events_stamped_in_the_future_have_age_zero(conn, queue):
    queue.add("from a fast clock", age=-30, at=AT)

    assert measure(conn, at=AT).oldest_unexported_age_seconds == 0


def _series(name: str, value: monitoring_v3.TypedValue, value_type: int) -> monitoring_v3.TimeSeries:
    return monitoring_v3.TimeSeries(
        metric={"type": f"custom.googleapis.com/telemetry_export/{name}"},
        resource={
            "type": "generic_task",
            "labels": {
                "project_id": "acme-telemetry",
                "location": "europe-west1",
                "namespace": "telemetry-export",
                "job": "report_queue_metrics",
                "task_id": "instance-7",
            },
        },
        metric_kind=metric_pb2.MetricDescriptor.MetricKind.GAUGE,
        value_type=value_type,
        points=[monitoring_v3.Point(interval={"end_time": AT}, value=value)],
    )


def test_the_exact_create_time_series_request_for_a_known_queue_state(conn, known_queue, monitoring_client):
    settings = MetricsSettings(project="acme-telemetry", task_id="instance-7", location="europe-west1")
    sink = monitoring.sink_for(settings, "report_queue_metrics")

    result = report(measure(conn, at=AT), sink)

    int64, double = metric_pb2.MetricDescriptor.ValueType.INT64, metric_pb2.MetricDescriptor.ValueType.DOUBLE
    expected = monitoring_v3.CreateTimeSeriesRequest(
        name="projects/acme-telemetry",
        time_series=[
            _series("queue_backlog", monitoring_v3.TypedValue(int64_value=7), int64),
            _series("queue_oldest_unexported_age_seconds", monitoring_v3.TypedValue(int64_value=600), int64),
            _series("queue_in_flight", monitoring_v3.TypedValue(int64_value=1), int64),
            _series("queue_quarantined", monitoring_v3.TypedValue(int64_value=2), int64),
            _series("queue_exported_retained", monitoring_v3.TypedValue(int64_value=9), int64),
            _series("exported_last_hour", monitoring_v3.TypedValue(int64_value=4), int64),
            _series("queue_estimated_drain_seconds", monitoring_v3.TypedValue(double_value=6300.0), double),
        ],
    )
    assert monitoring_client.requests == [expected]
    assert monitoring_client.timeouts == [monitoring.REQUEST_TIMEOUT_SECONDS]
    assert (result.written_to, result.error) == ("cloud_monitoring", None)


def test_the_gauge_types_match_the_descriptors_terraform_declares():
    """terraform/monitoring.tf fixes each gauge's value type before the first write; a mismatch is refused."""
    declared = {
        "queue_backlog": "INT64",
        "queue_oldest_unexported_age_seconds": "INT64",
        "queue_in_flight": "INT64",
        "queue_quarantined": "INT64",
        "queue_exported_retained": "INT64",
        "exported_last_hour": "INT64",
        "queue_estimated_drain_seconds": "DOUBLE",
    }
    health = QueueHealth(AT, 1, 2, 0, 0, 0, 1, 3600.0)
    request = monitoring.build_request(health.gauges(), AT, project="p", location="global", task_id="t", job="j")

    written = {
        series.metric.type.rsplit("/", 1)[1]: metric_pb2.MetricDescriptor.ValueType.Name(series.value_type)
        for series in request.time_series
    }
    assert written == declared


def test_the_client_is_built_on_the_first_write_only_and_then_reused(monitoring_client):
    sink = CloudMonitoringSink(MetricsSettings(project="acme-telemetry"), "report_queue_metrics")
    assert monitoring_client.built == 0

    sink.write([Gauge("queue_backlog", 1)], AT)
    sink.write([Gauge("queue_backlog", 2)], AT)

    assert monitoring_client.built == 1
    assert len(monitoring_client.requests) == 2


def test_without_a_project_the_gauges_are_one_json_log_line_and_no_client_is_built(
    connections, conn, queue, database_url, monitoring_client, caplog
):
    queue.add("waiting", 7)
    queue.add("quarantined", 2, quarantined_ago=60)
    queue.add("exported", 4, age=HOUR, exported_ago=600)
    caplog.set_level(logging.INFO, logger="telemetry_export.monitoring")
    settings = Settings.from_env({"DATABASE_URL": database_url})

    outcome = run_metrics_job(settings, connections, {})

    assert monitoring_client.built == 0
    [record] = [r for r in caplog.records if r.name == "telemetry_export.monitoring"]
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "queue gauges"
    assert line["function"] == "report_queue_metrics"
    assert {key: line[key] for key in ("queue_backlog", "queue_quarantined", "exported_last_hour")} == {
        "queue_backlog": 7,
        "queue_quarantined": 2,
        "exported_last_hour": 4,
    }
    assert "job" not in line  # the run's own line carries the job; log-based metrics count those
    assert outcome.summary["written_to"] == "log"
    assert outcome.summary["queue_backlog"] == 7
    assert not outcome.unavailable


def test_a_cloud_monitoring_failure_makes_the_run_unavailable_with_the_reason(
    connections, conn, database_url, monitoring_client
):
    monitoring_client.error = ServiceUnavailable("monitoring is down")
    settings = Settings.from_env({"DATABASE_URL": database_url, "GOOGLE_CLOUD_PROJECT": "acme-telemetry"})

    outcome = run_metrics_job(settings, connections, {})

    assert outcome.unavailable
    assert "monitoring is down" in outcome.summary["error"]
    assert outcome.summary["queue_backlog"] == 0
    assert outcome.summary["written_to"] == "cloud_monitoring"
