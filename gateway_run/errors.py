"""The domain exceptions the gRPC layer turns into a status: a request refused, with its code."""

from __future__ import annotations

import grpc

BUSY_PREFIX = "gateway busy"


class RequestRejected(Exception):
    """A request breaks the protocol or fails identification; `code` is the gRPC status to answer with.

    The message is sent to the client, so it must say what to fix without echoing secrets.
    """

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class GatewayBusy(RequestRejected):
    """An accepted message could not start within TELEMETRY_GATEWAY_MAX_QUEUE_WAIT.

    Answered RESOURCE_EXHAUSTED with details starting "gateway busy" and a google.rpc.RetryInfo
    saying when to come back: the caller is slowed down, nothing it sent is lost (what did not
    start was not published, and is not acknowledged).
    """

    def __init__(self, message: str, retry_delay: float) -> None:
        super().__init__(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{BUSY_PREFIX}: {message}")
        self.retry_delay = retry_delay
