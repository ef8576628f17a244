"""What a job run returns to whichever door started it (the HTTP functions or the command line).

Jobs are pure of HTTP: they return a JobOutcome or raise BadRequest, and each door renders
these its own way (`http_jobs` as JSON with a status code, the CLI as text and an exit status).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class JobOutcome:
    """A run's summary.

    `unavailable`: a dependency could not be reached; retry later (HTTP 503).
    `misconfigured`: a dependency refused this instance as configured; retrying will not help until
    someone fixes the configuration (HTTP 500, as invalid settings).
    """

    summary: Mapping[str, Any]
    unavailable: bool = False
    misconfigured: bool = False


class BadRequest(ValueError):
    """The request cannot be run as sent; answered with 400 and this message."""
