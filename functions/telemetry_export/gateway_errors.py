"""How a RecordEvents stream ended badly, as types: the one place that reads gRPC statuses and their text.

Every stream opens with its metadata and an empty events message (the probe). The gateway
checks the metadata before it answers anything, so an error that arrives before the probe's
answer is about this instance (or the way to the gateway), never about an event: nothing
else had been sent. After the probe's answer the instance is known to be accepted, and a
refusal is about what the stream carried.

    before the probe's answer   a refusal code          -> InstanceRefused (fix the configuration)
                                RESOURCE_EXHAUSTED with RetryInfo -> GatewayBusy
                                anything else           -> GatewayUnavailable (retry later)
    after it                    RESOURCE_EXHAUSTED with RetryInfo -> GatewayBusy
                                RESOURCE_EXHAUSTED without        -> MessageTooLarge (gRPC's size limit)
                                INVALID_ARGUMENT, INTERNAL, ...   -> MessageRefused (a message it cannot take)
                                anything else           -> GatewayUnavailable
"""

from __future__ import annotations

import re

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

# gRPC's own words when a message is over a receive (or send) limit: "... larger than max (N vs. LIMIT)".
_SIZE_LIMIT = re.compile(r"larger than max \((\d+) vs\. (\d+)\)")
_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_RETRY_INFO_TYPE = error_details_pb2.RetryInfo.DESCRIPTOR.full_name

# Codes a gateway (ours or the reference) answers when it will not take this instance's metadata.
_INSTANCE_REFUSALS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,  # bad or expired license key, missing instance ID
        grpc.StatusCode.PERMISSION_DENIED,  # unlicensed instances not allowed, key for another instance
        grpc.StatusCode.UNAUTHENTICATED,  # Cloud Run IAM: no or wrong ID token
        grpc.StatusCode.FAILED_PRECONDITION,  # a gateway without a license public key
        grpc.StatusCode.UNIMPLEMENTED,  # an identifier kind the gateway does not know
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
# Codes that, after the instance was accepted, refuse what a message carried. INTERNAL is here
# because gRPC servers answer it when a request cannot be deserialized (grpc-go, grpcio).
_MESSAGE_REFUSALS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class StreamError(Exception):
    """The stream ended with an error; `reason` is the gateway's status, safe to log and store."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class GatewayUnavailable(StreamError):
    """Unreachable, stopping, stuck or failing: retry later, the rows had no fair attempt."""


class InstanceRefused(StreamError):
    """The gateway will not take events from this instance as configured (license key, instance ID)."""


class GatewayBusy(StreamError):
    """The gateway shed load; nothing unanswered was published. Retry after `retry_after` seconds."""

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class MessageTooLarge(StreamError):
    """A message was over a size limit; `limit` is the bytes gRPC named, None when it named none."""

    def __init__(self, reason: str, limit: int | None) -> None:
        super().__init__(reason)
        self.limit = limit


class MessageRefused(StreamError):
    """The gateway refused a message it received (it could not decode it, say) and ended the stream."""


def describe(code: grpc.StatusCode | None, details: str) -> str:
    return f"gateway stream failed: {code.name if code else 'UNKNOWN'}: {details}"


def classify(error: grpc.RpcError, instance_accepted: bool) -> StreamError:
    """The typed error for a stream that ended with `error`, given whether the probe was answered."""
    code = error.code() if hasattr(error, "code") else None
    details = (error.details() if hasattr(error, "details") else str(error)) or ""
    reason = describe(code, details)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        retry_after = _retry_after(error)
        if retry_after is not None:
            return GatewayBusy(reason, retry_after)
        if instance_accepted:
            match = _SIZE_LIMIT.search(details)
            return MessageTooLarge(reason, int(match.group(2)) if match else None)
        return GatewayUnavailable(reason)
    if not instance_accepted and code in _INSTANCE_REFUSALS:
        return InstanceRefused(f"{code.name}: {details}")
    if instance_accepted and code in _MESSAGE_REFUSALS:
        return MessageRefused(reason)
    return GatewayUnavailable(reason)


def _retry_after(error: grpc.RpcError) -> float | None:
    """The RetryInfo delay in the status details trailer, in seconds; None when there is none."""
    trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailers or ():
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except DecodeError:
            return None
        for detail in status.details:
            if detail.type_url.rsplit("/", 1)[-1] == _RETRY_INFO_TYPE:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    return max(info.retry_delay.ToTimedelta().total_seconds(), 0.0)
    return None
