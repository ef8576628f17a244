"""Reading events from JSON Lines: one protojson `Event` a line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from google.protobuf import json_format

from telemetry_events import pb
from telemetry_events.ids import new_event_id
from telemetry_events.validation import event_problems


class EventFileError(ValueError):
    """A line cannot be recorded; the message starts with its line number."""


def read_event_lines(lines: Iterable[bytes | str], source: str = "<stdin>") -> Iterator[pb.Event]:
    """Parses and validates each non-blank line, filling in `id` and `timestamp` when absent.

    Lines may be bytes (a file opened in binary), decoded here as UTF-8 one by one so that a
    bad byte is reported with its line.

    Raises:
        EventFileError: naming the first bad line and why it is bad.
    """
    for number, line in enumerate(lines, start=1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as error:
                raise EventFileError(
                    f"{source}:{number}: not UTF-8: {error.reason} at byte {error.start + 1} of the line"
                ) from None
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except json.JSONDecodeError as error:
            raise EventFileError(f"{source}:{number}: not JSON: {error.msg} at column {error.colno}") from None
        if not isinstance(document, dict):
            raise EventFileError(f"{source}:{number}: expected a JSON object (an Event), got {type(document).__name__}")
        event = pb.Event()
        try:
            json_format.ParseDict(document, event)
        except json_format.ParseError as error:
            raise EventFileError(f"{source}:{number}: not an Event: {error}") from None
        if not event.id:
            event.id = new_event_id()
        if not event.HasField("timestamp"):
            event.timestamp.GetCurrentTime()
        problems = event_problems(event)
        if problems:
            raise EventFileError(f"{source}:{number}: {'; '.join(problems)}")
        yield event
