"""How a stream's end is read, for odd statuses: the exact reason stored, errors without a status, odd trailers.

Found by mutation testing (docs/testing.md): test_gateway_errors.py checked the type and that the details appear
somewhere in the reason, so a reason that lost its code, or a RetryInfo read from the wrong trailer, went unseen.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from localdev.scripted_gateway import busy_status_trailer
from telemetry_export.gateway_errors import (
    GatewayBusy,
    GatewayUnavailable,
    InstanceRefused,
    MessageTooLarge,
    classify,
    describe,
)

from .call_status import Status

C = grpc.StatusCode
DETAILS_KEY = "grpc-status-details-bin"


class StatusWithoutTrailers(grpc.RpcError):
    """An error with a code and details but no trailing metadata (a channel failing before any answer)."""

    def __init__(self, code, details):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


def retry_info_status(seconds: float, type_url: str | None = None) -> tuple[str, bytes]:
    """The status details trailer with a RetryInfo; `type_url` spelled as given when not None."""
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(seconds * 1e9))
    info = error_details_pb2.RetryInfo(retry_delay=delay)
    detail = any_pb2.Any()
    if type_url is None:
        detail.Pack(info)
    else:
        detail.type_url, detail.value = type_url, info.SerializeToString()
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message="busy", details=[detail])
    return (DETAILS_KEY, status.SerializeToString())


def test_the_reason_names_the_code_and_the_details_exactly():
    assert describe(C.UNAVAILABLE, "connection refused") == "gateway stream failed: UNAVAILABLE: connection refused"
    assert describe(None, "boom") == "gateway stream failed: UNKNOWN: boom"
    error = classify(Status(C.UNAVAILABLE, "connection refused"), instance_accepted=True)
    assert error.reason == str(error) == "gateway stream failed: UNAVAILABLE: connection refused"
    early = classify(Status(C.RESOURCE_EXHAUSTED, "too many streams"), instance_accepted=False)
    assert type(early) is GatewayUnavailable
    assert early.reason == "gateway stream failed: RESOURCE_EXHAUSTED: too many streams"
    refused = classify(Status(C.PERMISSION_DENIED, "key for another instance"), instance_accepted=False)
    assert type(refused) is InstanceRefused and refused.reason == "PERMISSION_DENIED: key for another instance"


def test_an_error_without_a_status_is_an_outage_described_by_its_text():
    # Not every RpcError a channel raises carries code() and details(); it must still be classified, not crash.
    error = classify(grpc.RpcError("channel closed"), instance_accepted=True)
    assert type(error) is GatewayUnavailable and error.reason == "gateway stream failed: UNKNOWN: channel closed"


def test_empty_details_stay_empty():
    error = classify(Status(C.UNAVAILABLE, None), instance_accepted=True)
    assert error.reason == "gateway stream failed: UNAVAILABLE: "


def test_an_error_without_trailers_is_read_by_its_code_and_details():
    error = classify(StatusWithoutTrailers(C.RESOURCE_EXHAUSTED, "larger than max (5000 vs. 4000)"), True)
    assert type(error) is MessageTooLarge and error.limit == 4000


def test_the_retry_delay_is_found_behind_other_trailers_and_odd_values():
    trailers = (
        ("x-other-bin", b"\xff\xfe not a status"),  # another binary trailer: not parsed
        (DETAILS_KEY, "a text value"),  # the details key with a text value: skipped, not parsed
        busy_status_trailer(2),
    )
    error = classify(Status(C.RESOURCE_EXHAUSTED, "gateway busy", trailers), instance_accepted=True)
    assert type(error) is GatewayBusy and error.retry_after == 2


def test_the_retry_delay_is_read_whatever_the_type_urls_prefix():
    status = Status(C.RESOURCE_EXHAUSTED, "busy", (retry_info_status(3, "example.com/types/google.rpc.RetryInfo"),))
    error = classify(status, instance_accepted=True)
    assert type(error) is GatewayBusy and error.retry_after == 3


def test_a_detail_whose_type_url_has_no_slash_is_ignored_not_a_crash():
    # protobuf will not unpack it; without a RetryInfo the status reads as gRPC's size limit (no limit named).
    status = Status(C.RESOURCE_EXHAUSTED, "busy", (retry_info_status(3, "google.rpc.RetryInfo"),))
    error = classify(status, instance_accepted=True)
    assert type(error) is MessageTooLarge and error.limit is None


def test_a_short_retry_delay_is_kept_and_a_negative_one_is_zero():
    short = classify(Status(C.RESOURCE_EXHAUSTED, "busy", (retry_info_status(0.25),)), True)
    assert type(short) is GatewayBusy and short.retry_after == 0.25
    negative = classify(Status(C.RESOURCE_EXHAUSTED, "busy", (retry_info_status(-5),)), True)
    assert type(negative) is GatewayBusy and negative.retry_after == 0.0
