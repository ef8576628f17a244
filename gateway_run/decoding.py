"""Request bytes to messages. The server takes raw bytes from gRPC and decodes them here, so that
a malformed request is answered INVALID_ARGUMENT with a reason, not gRPC's generic INTERNAL."""

from __future__ import annotations

from typing import TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from gateway_run.errors import RequestRejected

M = TypeVar("M", bound=Message)


def decode(raw: bytes, message_type: type[M]) -> M:
    """Parses `raw` as `message_type`; raises RequestRejected(INVALID_ARGUMENT) when it is not one."""
    try:
        return message_type.FromString(raw)
    except DecodeError as error:
        name = message_type.DESCRIPTOR.name
        raise RequestRejected(grpc.StatusCode.INVALID_ARGUMENT, f"request is not a valid {name}: {error}") from None
