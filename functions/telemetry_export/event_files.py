"""Reading events from JSON Lines: one protojson `Event` a line, straight to the rows recording writes.

Most lines are read by a C extension straight to the Event's wire bytes
(telemetry_export.protojson_wire), and the Event then takes the Python API's path, its
event_logs line read from those same bytes. A line the C reader gives up on (or every line,
where it is not compiled) takes the Python fast path (telemetry_export.protojson_reader: JSON
to an Event's constructor arguments, translated and redacted as they are), and a line that
one does not take is parsed by `json_format.Parse`: the same rows whichever reads it.

One process prepares on one core whatever the threads, so a large file is read in blocks of
lines that reader processes turn into rows (`read_event_rows_in_parallel`), while the
command's own process only hands the blocks out and writes the rows, in the file's order.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterable, Iterator

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from telemetry_events import pb
from telemetry_events.export_mode import ExportScope
from telemetry_events.ids import new_event_id
from telemetry_events.nesting import NestedTooDeep
from telemetry_events.redaction import RedactionPolicy
from telemetry_events.validation import InvalidEventError
from telemetry_export.protojson_reader import NotAnObject, parse_arguments
from telemetry_export.protojson_wire import wire_bytes
from telemetry_export.reader_processes import BlockFailed, ProcessDied, results_in_order
from telemetry_export.recording import arguments_row, event_row
from telemetry_export.store.recording import RecordedRow

_EVENT = pb.Event.DESCRIPTOR


class EventFileError(ValueError):
    """A line cannot be recorded; the message starts with `FILE:LINE`."""


def read_event_rows(
    lines: Iterable[bytes | str], source: str, policy: RedactionPolicy, scope: ExportScope, first_line: int = 1
) -> Iterator[RecordedRow]:
    """The rows of each non-blank line, filling in `id` and `timestamp` when absent.

    Lines may be bytes (a file opened in binary), decoded here as UTF-8 one by one so that a
    bad byte is reported with its line. `first_line` is the number of the first line in its file.

    Raises:
        EventFileError: naming the first bad line and why it is bad.
    """
    for number, line in enumerate(lines, start=first_line):
        try:
            row = _plain_line_row(line, policy, scope)
        except InvalidEventError as error:
            raise EventFileError(f"{source}:{number}: {error}") from None
        if row is None:
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
                row = _line_row(line, policy, scope)
            except (_LineError, InvalidEventError) as error:
                raise EventFileError(f"{source}:{number}: {error}") from None
        yield row


# Lines per block handed to a reader process: a few milliseconds of work each, little to copy.
BLOCK_LINES = 1_000


def read_event_rows_in_parallel(
    lines: Iterable[bytes | str], source: str, policy: RedactionPolicy, scope: ExportScope, readers: int
) -> Iterator[RecordedRow]:
    """`read_event_rows`, with the lines prepared by `readers` processes; rows come in the file's order.

    An input of one block is read in this process: starting a reader costs more than it saves.
    The first bad line in the file's order raises, as `read_event_rows` would, and no reader
    outlives the iteration.

    Raises:
        EventFileError: naming the first bad line and why it is bad.
        ProcessDied: a reader process died (killed, out of memory) or failed unexpectedly.
    """
    line_iterator = iter(lines)
    blocks = iter(lambda: list(itertools.islice(line_iterator, BLOCK_LINES)), [])
    first = next(blocks, None)
    second = next(blocks, None) if first is not None else None
    if second is None:
        yield from read_event_rows(first or (), source, policy, scope)
        return
    numbered = (
        (block, 1 + number * BLOCK_LINES) for number, block in enumerate(itertools.chain((first, second), blocks))
    )
    try:
        for rows in results_in_order(
            numbered,
            _read_block,
            readers,
            setup=_start_reader,
            setup_arguments=(source, policy, scope),
            expected_errors=(EventFileError,),
        ):
            yield from rows
    except BlockFailed as failure:
        raise failure.error from None
    except ProcessDied as error:
        raise ProcessDied(f"a process reading {source} {error}") from None


_reader: tuple[str, RedactionPolicy, ExportScope] | None = None


def _start_reader(source: str, policy: RedactionPolicy, scope: ExportScope) -> None:
    global _reader
    _reader = (source, policy, scope)


def _read_block(numbered_block: tuple[list[bytes | str], int]) -> list[RecordedRow]:
    assert _reader is not None, "_start_reader runs first in every reader process"
    source, policy, scope = _reader
    block, first_line = numbered_block
    return list(read_event_rows(block, source, policy, scope, first_line))


class _LineError(ValueError):
    pass


def _plain_line_row(line: bytes | str, policy: RedactionPolicy, scope: ExportScope) -> RecordedRow | None:
    """The rows of a line in a plain form, read by the C extension; None leaves the line to the Python path.

    Raises:
        InvalidEventError: the line holds an Event that breaks a rule.
    """
    if isinstance(line, str):
        try:
            line = line.encode()
        except UnicodeEncodeError:
            return None  # a lone surrogate: the Python path says what is wrong
    data = wire_bytes(line, _EVENT)
    if data is None:
        return None
    try:
        event = pb.Event.FromString(data)
    except DecodeError:
        return None  # never seen: the Python path decides rather than a crash
    _fill_in(event)
    return event_row(event, policy, scope, serialized=data)


def _fill_in(event: pb.Event) -> None:
    """An ID and the time of reading for an event that has none."""
    if not event.id:
        event.id = new_event_id()
    if not event.HasField("timestamp"):
        event.timestamp.GetCurrentTime()


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
    _fill_in(event)
    return event_row(event, policy, scope)
