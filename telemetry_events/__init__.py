"""What both deployables agree on: the wire API, event IDs, event validation, redaction and export modes."""

from telemetry_events.telemetrygateway.v1 import telemetrygateway_pb2 as pb

__all__ = ["pb"]
