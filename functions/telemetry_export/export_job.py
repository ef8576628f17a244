"""One export run as the function and the command line start it: settings in, report out."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from telemetry_export.gateway_client import open_channel, parse_gateway_addr
from telemetry_export.identity_check import check_identity
from telemetry_export.outcome import BadRequest, JobOutcome
from telemetry_export.settings import Settings
from telemetry_export.store.connection import Connections

if TYPE_CHECKING:
    from telemetry_export.exporter import ExportReport


def export_once(
    settings: Settings,
    connections: Connections,
    max_batches: int | None = None,
    on_progress: Callable[[ExportReport], None] | None = None,
) -> ExportReport:
    """One export run; raises SettingError (naming the variable) before connecting when the settings cannot work."""
    # Imported here: the exporter needs grpc, and the cleanup and metrics functions, which share
    # main.py with the export function, never do: their cold start does not pay for it.
    from telemetry_export.exporter import run_export

    target = parse_gateway_addr(settings.exporter.gateway_addr, allow_insecure=settings.exporter.allow_insecure)
    check_identity(settings.exporter.identity)
    with connections.connection() as conn:
        return run_export(
            conn,
            settings.exporter,
            settings.redaction,
            lambda: open_channel(target),
            max_batches=max_batches,
            on_progress=on_progress,
            scope=settings.export_scope,
        )


def run_export_job(settings: Settings, connections: Connections, options: dict[str, Any]) -> JobOutcome:
    """The export function's job.

    503 when the gateway could not be reached (retry later); 500, as for invalid settings, when
    the gateway refused this instance (fix the configuration); 200 otherwise, a busy gateway included.
    """
    max_batches = options.get("max_batches")
    if max_batches is not None and max_batches < 1:
        raise BadRequest("option max_batches must be at least 1")
    report = export_once(settings, connections, max_batches=max_batches)
    return JobOutcome(report.summary(), unavailable=report.gateway_unavailable, misconfigured=report.instance_refused)
