"""Stream errors classified by code, by whether the instance was accepted, and by the RetryInfo trailer."""

from __future__ import annotations

import grpc
import pytest

from localdev.scripted_gateway import busy_status_trailer
from telemetry_export.gateway_errors import (
    GatewayBusy,
    GatewayUnavailable,
    InstanceRefused,
    MessageRefused,
    MessageTooLarge,
    classify,
)

from .call_status import Status

C = grpc.StatusCode
CASES = [
    # (code, details, trailers, instance accepted, expected type)
    (C.INVALID_ARGUMENT, "invalid license_key: expired", (), False, InstanceRefused),
    (C.INVALID_ARGUMENT, "instance_id is required for an unlicensed instance", (), False, InstanceRefused),
    (C.PERMISSION_DENIED, "this gateway accepts only licensed instances", (), False, InstanceRefused),
    (C.UNAUTHENTICATED, "no ID token", (), False, InstanceRefused),
    (C.UNAVAILABLE, "connection refused", (), False, GatewayUnavailable),
    (C.INTERNAL, "failed to create publisher", (), False, GatewayUnavailable),
    (C.RESOURCE_EXHAUSTED, "gateway busy", (busy_status_trailer(3),), False, GatewayBusy),
    (C.INVALID_ARGUMENT, "request is not a valid RecordEventsRequest", (), True, MessageRefused),
    (C.INTERNAL, "Exception deserializing request!", (), True, MessageRefused),
    (C.RESOURCE_EXHAUSTED, "gateway busy", (busy_status_trailer(3),), True, GatewayBusy),
    (C.RESOURCE_EXHAUSTED, "Received message larger than max (5000 vs. 4000)", (), True, MessageTooLarge),
    (C.UNAVAILABLE, "the gateway is shutting down; reconnect", (), True, GatewayUnavailable),
    (C.DEADLINE_EXCEEDED, "Deadline Exceeded", (), True, GatewayUnavailable),
    (C.CANCELLED, "Cancelled", (), True, GatewayUnavailable),
]


@pytest.mark.parametrize("code, details, trailers, accepted, expected", CASES)
def test_classification(code, details, trailers, accepted, expected):
    error = classify(Status(code, details, trailers), instance_accepted=accepted)
    assert type(error) is expected
    assert details in error.reason


def test_the_retry_delay_and_the_size_limit_are_read_from_the_status():
    busy = classify(Status(C.RESOURCE_EXHAUSTED, "gateway busy", (busy_status_trailer(2.5),)), True)
    assert isinstance(busy, GatewayBusy) and busy.retry_after == 2.5
    large = classify(Status(C.RESOURCE_EXHAUSTED, "Received message larger than max (5000 vs. 4000)"), True)
    assert isinstance(large, MessageTooLarge) and large.limit == 4000
    unnamed = classify(Status(C.RESOURCE_EXHAUSTED, "Received message too large"), True)
    assert isinstance(unnamed, MessageTooLarge) and unnamed.limit is None
