"""Where gauges go: Cloud Monitoring custom metrics when a project is configured, a JSON log line otherwise.

Cloud Monitoring takes gauges with create_time_series: one point per time series per request,
each on a `generic_task` resource whose labels (project, location, namespace, job, task id)
stay the same from run to run, so every run extends the same time series. Log-based metrics
cannot carry a gauge, hence the direct write.

The google-cloud-monitoring client needs credentials and takes about half a second to import,
so the library is imported, and the client built, on the first write only, and only by the
Cloud Monitoring sink: local runs without GOOGLE_CLOUD_PROJECT never touch it. The client is
then kept for the life of the process (a warm function instance reuses it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from telemetry_export.settings import MetricsSettings

if TYPE_CHECKING:
    from google.cloud import monitoring_v3

logger = logging.getLogger(__name__)

METRIC_TYPE_PREFIX = "custom.googleapis.com/telemetry_export/"
RESOURCE_TYPE = "generic_task"
NAMESPACE = "telemetry-export"
REQUEST_TIMEOUT_SECONDS = 30.0

CLOUD_MONITORING = "cloud_monitoring"
LOG = "log"


@dataclass(frozen=True)
class Gauge:
    """One value to report. An int is written as INT64, a float as DOUBLE (the metric descriptor's type)."""

    name: str
    value: int | float


class MonitoringUnavailable(Exception):
    """Cloud Monitoring could not be reached or refused the write; the message says why."""


class GaugeSink(Protocol):
    """Somewhere gauges are written; `destination` names it in run summaries."""

    destination: str

    def write(self, gauges: Sequence[Gauge], at: datetime) -> None: ...


def _new_client() -> Any:
    # Imported here: the library pulls in gRPC and Google auth, which runs without a project never need.
    from google.cloud import monitoring_v3

    return monitoring_v3.MetricServiceClient()


client_factory: Callable[[], Any] = _new_client
"""Builds the MetricServiceClient. The one seam for tests: they replace it with a recording fake."""


def build_request(
    gauges: Sequence[Gauge], at: datetime, *, project: str, location: str, task_id: str, job: str
) -> monitoring_v3.CreateTimeSeriesRequest:
    """The CreateTimeSeriesRequest writing each gauge as one GAUGE point ending at `at`."""
    from google.api import metric_pb2
    from google.cloud import monitoring_v3

    kind = metric_pb2.MetricDescriptor.MetricKind
    value_type = metric_pb2.MetricDescriptor.ValueType
    resource = {
        "type": RESOURCE_TYPE,
        "labels": {
            "project_id": project,
            "location": location,
            "namespace": NAMESPACE,
            "job": job,
            "task_id": task_id,
        },
    }
    interval = monitoring_v3.TimeInterval(end_time=at)
    series = []
    for gauge in gauges:
        if isinstance(gauge.value, bool) or not isinstance(gauge.value, int | float):
            raise TypeError(f"gauge {gauge.name} must be an int or a float, got {type(gauge.value).__name__}")
        if isinstance(gauge.value, int):
            typed, value = value_type.INT64, monitoring_v3.TypedValue(int64_value=gauge.value)
        else:
            typed, value = value_type.DOUBLE, monitoring_v3.TypedValue(double_value=gauge.value)
        series.append(
            monitoring_v3.TimeSeries(
                metric={"type": METRIC_TYPE_PREFIX + gauge.name},
                resource=resource,
                metric_kind=kind.GAUGE,
                value_type=typed,
                points=[monitoring_v3.Point(interval=interval, value=value)],
            )
        )
    return monitoring_v3.CreateTimeSeriesRequest(name=f"projects/{project}", time_series=series)


class CloudMonitoringSink:
    """Writes gauges to Cloud Monitoring in one create_time_series call; builds its client on first use."""

    destination = CLOUD_MONITORING

    def __init__(self, settings: MetricsSettings, job: str):
        if not settings.project:
            raise ValueError("Cloud Monitoring needs a project (GOOGLE_CLOUD_PROJECT)")
        self._settings = settings
        self._job = job
        self._client: Any = None
        self._lock = threading.Lock()

    def write(self, gauges: Sequence[Gauge], at: datetime) -> None:
        """Raises MonitoringUnavailable when the client cannot be built or the call fails."""
        if not gauges:
            return
        s = self._settings
        request = build_request(gauges, at, project=s.project, location=s.location, task_id=s.task_id, job=self._job)
        from google.api_core.exceptions import GoogleAPIError
        from google.auth.exceptions import GoogleAuthError

        try:
            self._get_client().create_time_series(request=request, timeout=REQUEST_TIMEOUT_SECONDS)
        except (GoogleAPIError, GoogleAuthError) as error:
            raise MonitoringUnavailable(f"writing {len(gauges)} gauge(s) to project {s.project}: {error}") from error

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = client_factory()
            return self._client


class LogSink:
    """Logs all gauges as one structured line (message "queue gauges"), for runs without a project."""

    destination = LOG

    def __init__(self, job: str):
        self._job = job

    def write(self, gauges: Sequence[Gauge], at: datetime) -> None:
        fields = {gauge.name: gauge.value for gauge in gauges}
        # "function", not "job": the run line of the job carries "job", and log-based metrics count those lines.
        logger.info("queue gauges", extra={"function": self._job, "measured_at": at.isoformat(), **fields})


@cache
def sink_for(settings: MetricsSettings, job: str) -> GaugeSink:
    """The process' sink for `job`: Cloud Monitoring when a project is configured, the log otherwise."""
    if settings.project:
        return CloudMonitoringSink(settings, job)
    return LogSink(job)
