"""The gateway service's names and method paths, read from the generated descriptor (never typed by hand)."""

from __future__ import annotations

from telemetry_events import pb

_SERVICE = pb.DESCRIPTOR.services_by_name["TelemeteryGatewayService"]  # sic: the reference's spelling

SERVICE_NAME = _SERVICE.full_name  # telemetrygateway.v1.TelemeteryGatewayService


def method_path(method: str) -> str:
    """The HTTP/2 path of one of the service's methods, as gRPC calls it."""
    return f"/{SERVICE_NAME}/{_SERVICE.methods_by_name[method].name}"


RECORD_EVENTS = method_path("RecordEvents")
RECORD_EVENT = method_path("RecordEvent")
