"""`telemetry-export cleanup`, `metrics` and `queue status`, driven as an admin would."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from google.api_core.exceptions import ServiceUnavailable

from telemetry_export.cli.main import main
from telemetry_export.cli.queue import format_duration, status_table
from telemetry_export.queue_metrics import QueueHealth
from telemetry_export.settings import load_settings

from .conftest import DAY, HOUR


@pytest.fixture
def cli(job_env, conn, capsys):
    """Runs the command line in-process against this module's database; returns (status, out, err)."""

    def run(*argv: str):
        load_settings.cache_clear()
        status = main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    return run


def test_cleanup_reports_what_it_deleted_under_which_window(cli, queue):
    queue.add("exported 1h ago", age=2 * HOUR, exported_ago=HOUR)
    queue.add("exported 25h ago", 1_200, age=26 * HOUR, exported_ago=25 * HOUR)
    queue.add("quarantined 31 days ago", age=32 * DAY, quarantined_ago=31 * DAY)

    status, out, err = cli("cleanup")

    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("deleted 1,200 exported row(s): exported before ")
    assert lines[0].endswith(" UTC (retention 1d 00h)")
    assert lines[1].startswith("deleted 1 quarantined row(s): quarantined before ")
    assert lines[1].endswith(" UTC (retention 30d 00h)")
    assert lines[2].startswith("still eligible: 0 exported, 0 quarantined; nothing left to delete after ")
    assert queue.labels() == {"exported 1h ago": 1}


def test_cleanup_json_is_the_functions_summary_with_the_configured_window(cli, queue, job_env):
    job_env.setenv("TELEMETRY_CLEANUP_RETENTION", "30m")
    queue.add("exported 1h ago", age=2 * HOUR, exported_ago=HOUR)

    status, out, _ = cli("cleanup", "--json")

    summary = json.loads(out)
    assert status == 0
    assert (summary["deleted"], summary["retention_seconds"], summary["stopped_because"]) == (1, 1800, "nothing left")


def test_metrics_prints_the_figures_and_logs_them_without_a_project(cli, queue, monitoring_client):
    queue.add("waiting", 4, age=90)
    queue.add("exported", 2, age=HOUR, exported_ago=60)

    status, out, _ = cli("metrics")

    figures = json.loads(out)
    assert status == 0
    assert (figures["queue_backlog"], figures["queue_oldest_unexported_age_seconds"] >= 90) == (4, True)
    assert (figures["queue_estimated_drain_seconds"], figures["written_to"]) == (7200.0, "log")
    assert monitoring_client.built == 0


def test_metrics_writes_to_cloud_monitoring_when_a_project_is_configured(cli, queue, monitoring_client, job_env):
    job_env.setenv("GOOGLE_CLOUD_PROJECT", "acme-telemetry")
    queue.add("waiting", 2)

    status, out, _ = cli("metrics")

    assert (status, json.loads(out)["written_to"]) == (0, "cloud_monitoring")
    [request] = monitoring_client.requests
    assert request.time_series[0].points[0].value.int64_value == 2


def test_metrics_no_write_builds_no_client_even_with_a_project(cli, queue, monitoring_client, job_env):
    job_env.setenv("GOOGLE_CLOUD_PROJECT", "acme-telemetry")

    status, out, _ = cli("metrics", "--no-write")

    assert (status, json.loads(out)["written_to"]) == (0, "nowhere")
    assert monitoring_client.built == 0


def test_metrics_fails_with_the_reason_when_cloud_monitoring_refuses(cli, monitoring_client, job_env):
    job_env.setenv("GOOGLE_CLOUD_PROJECT", "acme-telemetry")
    monitoring_client.error = ServiceUnavailable("try later")

    status, out, err = cli("metrics")

    assert status == 2
    assert json.loads(out)["queue_backlog"] == 0  # the figures are still shown
    assert err.startswith("telemetry-export: error: writing 7 gauge(s) to project acme-telemetry:")
    assert "try later" in err


def test_queue_status_is_a_readable_table(cli, queue, database_url):
    queue.add("waiting", 1_234, age=2 * HOUR + 30)
    queue.add("in flight", 10, age=60, leased_for=300)
    queue.add("quarantined", 2, age=DAY, quarantined_ago=HOUR)
    queue.add("exported recently", 3_600, age=HOUR, exported_ago=600)

    status, out, err = cli("queue", "status")

    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith(f"export queue at 127.0.0.1:{database_url.rsplit(':', 1)[1].split('/')[0]}/")
    assert lines[0].endswith(" UTC")
    assert lines[1:] == [
        "",
        "  backlog (waiting for export)         1,244",
        "    of which in flight (leased)           10",
        "  oldest waiting event                 2h 00m ago",
        "  estimated time to drain              20m 44s",
        "  quarantined                              2",
        "  withheld (outside the export scope)      0",
        "  exported, kept until cleanup         3,600",
        "  exported in the last hour            3,600",
    ]


def test_queue_status_json(cli, queue):
    queue.add("waiting", 3)

    status, out, _ = cli("queue", "status", "--json")

    assert status == 0
    assert json.loads(out)["queue_backlog"] == 3


def test_queue_status_of_an_empty_queue_and_an_unknown_drain_time():
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    empty = status_table(QueueHealth(at, 0, 0, 0, 0, 0, 0, 0.0), "db")
    stuck = status_table(QueueHealth(at, 5, 7200, 0, 0, 0, 0, None), "db")

    assert "oldest waiting event" + " " * 17 + "none waiting" in empty
    assert "estimated time to drain" + " " * 14 + "nothing to drain" in empty
    assert "estimated time to drain" + " " * 14 + "unknown (nothing exported in the last hour)" in stuck
    assert stuck.splitlines()[0] == "export queue at db, 2026-03-01 12:00:00 UTC"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (42.4, "42s"), (303, "5m 03s"), (7620, "2h 07m"), (273_600, "3d 04h"), (-5, "0s")],
)
def test_durations_read_as_their_two_largest_units(seconds, shown):
    assert format_duration(seconds) == shown
