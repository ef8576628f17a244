"""The metrics job: measures the export queue's health and reports it as gauges.

Without these gauges nobody notices a stuck export until data is days late. The backlog
counts exportable rows only: quarantined (poison) rows are reported on their own gauge, so
they can never make a healthy queue look stuck, as they did in the reference system.

The gauge names below are the metric names under custom.googleapis.com/telemetry_export/;
terraform/monitoring.tf declares the same names with their types, and the alert policies and
dashboard read them. The run summary (HTTP response, run log line, `telemetry-export metrics`)
uses the same names as keys.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from telemetry_export import monitoring
from telemetry_export.monitoring import Gauge, GaugeSink, MonitoringUnavailable
from telemetry_export.outcome import JobOutcome
from telemetry_export.settings import Settings
from telemetry_export.store import queue_figures as store
from telemetry_export.store.connection import Connection, Connections, transaction

logger = logging.getLogger(__name__)

FUNCTION_NAME = "report_queue_metrics"
"""The `job` label of the gauges' generic_task resource: the entry point, stable across deployments."""

EXPORT_RATE_WINDOW_SECONDS = 3600.0


@dataclass(frozen=True)
class QueueHealth:
    """The queue's figures at one instant.

    estimated_drain_seconds is the backlog divided by the export rate of the past hour; 0.0
    when the backlog is empty, and None (unknown: no gauge point is written) when there is a
    backlog but nothing was exported in the past hour. A stuck queue is caught by the oldest
    age instead, which keeps growing.
    """

    measured_at: datetime
    backlog: int
    oldest_unexported_age_seconds: int
    in_flight: int
    quarantined: int
    exported_retained: int
    exported_last_hour: int
    estimated_drain_seconds: float | None

    @classmethod
    def from_counts(cls, counts: store.QueueCounts) -> QueueHealth:
        age = 0
        if counts.oldest_exportable is not None:
            # Floored to whole seconds; clamped at 0 for events stamped slightly in the future (clock skew).
            age = max(0, math.floor((counts.measured_at - counts.oldest_exportable).total_seconds()))
        return cls(
            measured_at=counts.measured_at,
            backlog=counts.backlog,
            oldest_unexported_age_seconds=age,
            in_flight=counts.in_flight,
            quarantined=counts.quarantined,
            exported_retained=counts.exported_retained,
            exported_last_hour=counts.exported_last_hour,
            estimated_drain_seconds=estimated_drain_seconds(counts.backlog, counts.exported_last_hour),
        )

    def figures(self) -> dict[str, int | float | None]:
        """Metric name to value, in a stable order; the drain estimate may be None."""
        return {
            "queue_backlog": self.backlog,
            "queue_oldest_unexported_age_seconds": self.oldest_unexported_age_seconds,
            "queue_in_flight": self.in_flight,
            "queue_quarantined": self.quarantined,
            "queue_exported_retained": self.exported_retained,
            "exported_last_hour": self.exported_last_hour,
            "queue_estimated_drain_seconds": self.estimated_drain_seconds,
        }

    def gauges(self) -> list[Gauge]:
        """The figures that have a value, as gauges."""
        return [Gauge(name, value) for name, value in self.figures().items() if value is not None]


def estimated_drain_seconds(backlog: int, exported_last_hour: int) -> float | None:
    """Seconds to export `backlog` at the past hour's rate; None when that rate is zero and rows wait."""
    if backlog == 0:
        return 0.0
    if exported_last_hour == 0:
        return None
    return round(backlog * EXPORT_RATE_WINDOW_SECONDS / exported_last_hour, 1)


def measure(conn: Connection, at: datetime | None = None) -> QueueHealth:
    """The queue's health now (the database's clock), or as of `at`."""
    with transaction(conn) as cursor:
        return QueueHealth.from_counts(store.queue_counts(cursor, at))


@dataclass(frozen=True)
class MetricsReport:
    """One run: the figures, where they went, and why writing them failed (None when it did not)."""

    health: QueueHealth
    written_to: str
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            **self.health.figures(),
            "measured_at": self.health.measured_at.isoformat(),
            "written_to": self.written_to,
        }
        if self.error is not None:
            body["error"] = self.error
        return body


def report(health: QueueHealth, sink: GaugeSink) -> MetricsReport:
    """Writes `health` to `sink`; a Cloud Monitoring failure is reported in the result, not raised."""
    try:
        sink.write(health.gauges(), health.measured_at)
    except MonitoringUnavailable as error:
        return MetricsReport(health, sink.destination, str(error))
    return MetricsReport(health, sink.destination)


def run_metrics_job(settings: Settings, connections: Connections, options: dict[str, Any]) -> JobOutcome:
    """One run of the report_queue_metrics function: measure, release the connection, then write."""
    with connections.connection() as conn:
        health = measure(conn)
    result = report(health, monitoring.sink_for(settings.metrics, FUNCTION_NAME))
    return JobOutcome(result.summary(), unavailable=result.error is not None)
