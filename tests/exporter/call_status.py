"""A finished call's status as the exporter's reader thread receives it, for the error-classification tests."""

from __future__ import annotations

import grpc


class Status(grpc.RpcError):
    """A finished call's status, as the reader thread receives it (grpc's own _MultiThreadedRendezvous)."""

    def __init__(self, code, details, trailers=()):
        self._code, self._details, self._trailers = code, details, trailers

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailers
