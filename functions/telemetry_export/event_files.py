"""Reading events from JSON Lines: one protojson `Event` a line, straight to the rows recording writes.

Most lines take the fast path (telemetry_export.protojson_reader): JSON to an Event's
constructor arguments, translated and redacted as they are; an Event is built only for the
redacted copy that is queued. A line the fast path does not take is parsed by
`json_format.Parse` and recorded as an Event: the same rows either way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator

from google.protobuf import json_format

from telemetry_events import pb
from telemetry_events.export_mode import ExportScope
from telemetry_events.ids import new_event_id
from telemetry_events.nesting import NestedTooDeep
from telemetry_events.redaction import RedactionPolicy
from telemetry_events.validation import InvalidEventError
from telemetry_export.protojson_reader import NotAnObject, parse_arguments
from telemetry_export.recording import arguments_row, event_row
from telemetry_export.store.recording import RecordedRow

_EVENT = pb.Event.DESCRIPTOR


class EventFileError(ValueError):
    """A line cannot be recorded; the message starts with `FILE:LINE`."""


def read_event_rows(
    lines: Iterable[bytes | str], source: str, policy: RedactionPolicy, scope: ExportScope
) -> Iterator[RecordedRow]:
    """The rows of each non-blank line, filling in `id` and `timestamp` when absent.

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
        if not line or line.isspace():
            continue
        try:
            yield _line_row(line, policy, scope)
        except (_LineError, InvalidEventError) as error:
            raise EventFileError(f"{source}:{number}: {error}") from None


class _LineError(ValueError):
    pass


def _line_row(line: str, policy: RedactionPolicy, scope: ExportScope) -> RecordedRow:
    try:
        arguments = parse_arguments(line, _EVENT)
    except json.JSONDecodeError as error:
        raise _LineError(f"not JSON: {error.msg} at column {error.colno}") from None
    except RecursionError:
        raise _LineError("not JSON: nested too deeply to read") from None
    except NotAnObject as error:
        raise _LineError(f"expected a JSON object (an Event), got {error.kind}") from None
    except NestedTooDeep as error:
        raise _LineError(str(error)) from None
    if arguments is not None:
        if not arguments.get("id"):
            arguments["id"] = new_event_id()
        if "timestamp" not in arguments:
            now = time.time_ns()
            arguments["timestamp"] = {"seconds": now // 1_000_000_000, "nanos": now % 1_000_000_000}
        return arguments_row(arguments, policy, scope)
    try:
        event = json_format.Parse(line, pb.Event())
    except json_format.ParseError as error:
        raise _LineError(f"not an Event: {error}") from None
    if not event.id:
        event.id = new_event_id()
    if not event.HasField("timestamp"):
        event.timestamp.GetCurrentTime()
    return event_row(event, policy, scope)
