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
    """A run's summary. `unavailable` means a dependency could not be reached (HTTP 503)."""

    summary: Mapping[str, Any]
    unavailable: bool = False


class BadRequest(ValueError):
    """The request cannot be run as sent; answered with 400 and this message."""
