"""The one domain exception the gRPC layer turns into a status: a request refused, with its code."""

from __future__ import annotations

import grpc


class RequestRejected(Exception):
    """A request breaks the protocol or fails identification; `code` is the gRPC status to answer with.

    The message is sent to the client, so it must say what to fix without echoing secrets.
    """

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
