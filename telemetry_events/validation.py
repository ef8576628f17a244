"""The rules every event must meet, with messages precise enough to fix the event by."""

from __future__ import annotations

import re

from telemetry_events import pb
from telemetry_events.ids import is_uuid
from telemetry_events.nesting import nesting_problem

MAX_NAME_LENGTH = 64
# A Timestamp's valid range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
_NAME_PATTERN = re.compile(r"^[a-z][a-zA-Z-\.]+$")


class InvalidEventError(ValueError):
    """An event breaks a rule; the message names the field and the rule."""


def name_problem(field: str, value: str) -> str | None:
    """Returns what is wrong with a feature or action name, or None when it is valid."""
    if not value:
        return f"{field} is required"
    if len(value) > MAX_NAME_LENGTH:
        return (
            f"{field} {value[:MAX_NAME_LENGTH]!r}... is {len(value)} characters long, at most {MAX_NAME_LENGTH} allowed"
        )
    if not _NAME_PATTERN.fullmatch(value):
        return (
            f"{field} {value!r} must be a lowercase letter followed by one or more letters, '-' or '.' "
            "(pattern ^[a-z][a-zA-Z-\\.]+$)"
        )
    return None


def timestamp_problem(seconds: int, nanos: int) -> str | None:
    """What is wrong with a Timestamp's fields, or None when it is in the range protobuf defines."""
    if not MIN_TIMESTAMP_SECONDS <= seconds <= MAX_TIMESTAMP_SECONDS:
        return f"timestamp seconds {seconds} is outside years 0001 to 9999"
    if not 0 <= nanos <= 999_999_999:
        return f"timestamp nanos {nanos} is outside 0 to 999,999,999"
    return None


def event_problems(event: pb.Event, id_checked: bool = False) -> list[str]:
    """Lists every rule `event` breaks, in field order; empty when it is valid.

    Args:
        id_checked: the caller already knows `event.id` is a UUID (skips a costly parse).
    """
    problems = []
    if not event.id:
        problems.append("id is required")
    elif not id_checked and not is_uuid(event.id):
        problems.append(f"id {event.id[:80]!r} is not a UUID")
    if not event.HasField("timestamp"):
        problems.append("timestamp is required")
    for field in ("feature", "action"):
        problem = name_problem(field, getattr(event, field))
        if problem:
            problems.append(problem)
    problem = nesting_problem(event)
    if problem:
        problems.append(problem)
    return problems


def recording_problems(event: pb.Event) -> list[str]:
    """The rules an event must meet to be recorded: every event rule, and a timestamp Postgres stores exactly.

    The wire accepts any Timestamp; recording stores it as timestamptz and protojson writes it, both
    only for years 0001 to 9999 with nanos from 0 to 999,999,999.
    """
    problems = event_problems(event)
    if event.HasField("timestamp"):
        problem = timestamp_problem(event.timestamp.seconds, event.timestamp.nanos)
        if problem:
            problems.append(problem)
    return problems


def validate_event(event: pb.Event) -> None:
    """Raises InvalidEventError listing every rule `event` breaks."""
    problems = event_problems(event)
    if problems:
        raise InvalidEventError("; ".join(problems))
