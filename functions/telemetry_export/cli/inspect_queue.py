"""`preview`, `exported --since` and `quarantine list|requeue`: what leaves, what left, what is set aside.

Every listing prints one JSON object a line, so the output can be read or piped into jq. Each
event is rendered exactly as the gateway publishes it (telemetry_events.published_form: legacy
metadata merged into `metadata`, the gateway's protojson), spliced in as that text, last on the
line: what `preview` prints is byte for byte the `event` part of the Pub/Sub message.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from google.protobuf.message import DecodeError

from telemetry_events import pb
from telemetry_events.envvars import SettingError, seconds
from telemetry_events.ids import canonical_uuid, is_uuid
from telemetry_events.protojson import EncodeError
from telemetry_events.published_form import published_event_json
from telemetry_export.cli.context import CommandFailed, database, positive_int, settings
from telemetry_export.outgoing import Unsendable, outgoing, withheld_reason
from telemetry_export.store import inspection
from telemetry_export.store.connection import transaction


def register(subparsers: argparse._SubParsersAction) -> None:
    preview = subparsers.add_parser(
        "preview",
        help="show exactly what the next export would send, after redaction, as JSON",
        description=(
            "Decode the rows the next export run would claim and apply today's redaction, exactly as the exporter "
            "does, without claiming or changing anything: the event is rendered from exactly the bytes that would be "
            "sent (fields the schema does not know dropped). Rows the exporter would quarantine, or withhold as "
            "outside today's export scope, are shown with the reason instead."
        ),
    )
    preview.add_argument("--limit", type=positive_int, default=10, help="rows to show (default 10)")
    preview.set_defaults(run=run_preview)

    exported = subparsers.add_parser(
        "exported",
        help="show events that left this instance recently, decoded",
        description="Show the events exported within a window (at most the cleanup retention), most recent first.",
    )
    exported.add_argument("--since", default="1h", help="window: seconds or 90s, 30m, 24h (default 1h)")
    exported.add_argument("--limit", type=positive_int, default=100, help="rows to show (default 100)")
    exported.set_defaults(run=run_exported)

    quarantine = subparsers.add_parser("quarantine", help="list or requeue rows set aside by the exporter")
    commands = quarantine.add_subparsers(dest="quarantine_command", metavar="COMMAND", required=True)
    listing = commands.add_parser(
        "list",
        help="quarantined rows with their reasons, newest first",
        description=(
            "Rows set aside by the exporter, newest first, with their reasons. Rows withheld because they were "
            "outside the export scope (TELEMETRY_EXPORT_MODE / TELEMETRY_EXPORT_FEATURES) when the exporter met "
            'them are listed too, with "withheld": true.'
        ),
    )
    listing.add_argument("--limit", type=positive_int, default=100, help="rows to show (default 100)")
    listing.set_defaults(run=run_quarantine_list)
    requeue = commands.add_parser(
        "requeue", help="make quarantined rows exportable again (after fixing what made them fail)"
    )
    which = requeue.add_mutually_exclusive_group(required=True)
    which.add_argument("ids", nargs="*", default=[], metavar="ID", help="event IDs to requeue")
    which.add_argument("--all", action="store_true", help="requeue every quarantined row")
    which.add_argument(
        "--withheld",
        action="store_true",
        help="requeue every row withheld as outside the export scope (after widening it); checked again when sent",
    )
    requeue.set_defaults(run=run_quarantine_requeue)


def _published_text(payload: bytes) -> str:
    """The event as the gateway publishes it, as JSON text; `null` when it has no such form.

    A row that is not an Event is quarantined with that reason, and redaction leaves nothing that
    protojson cannot write (a NaN could only sit in private metadata values, which are strings
    once redacted), so `null` is for rows whose reason already says why.
    """
    event = pb.Event()
    try:
        event.ParseFromString(payload)
        return published_event_json(event)
    except (DecodeError, EncodeError):
        return "null"


def _line(fields: dict[str, Any], event_text: str) -> str:
    """One listing line: the row's fields, then the event's published text as it is (not re-rendered)."""
    return f'{json.dumps(fields, sort_keys=True)[:-1]}, "event": {event_text}}}'


def run_preview(args: argparse.Namespace) -> int:
    config = settings()
    with database() as conn, transaction(conn) as cursor:
        rows = inspection.next_exportable(cursor, args.limit)
        total = inspection.count_exportable(cursor) if len(rows) == args.limit else len(rows)
    for row in rows:
        fields: dict[str, Any] = {"id": row.id, "attempts": row.attempts}
        try:
            wire = outgoing(row.id, row.payload, config.redaction)
        except Unsendable as reason:
            event_text = "null"
            fields["would_quarantine"] = str(reason)
        else:
            held = withheld_reason(config.export_scope, wire.feature)
            if held is not None:
                event_text = "null"
                fields["would_withhold"] = held
            else:
                event_text = _published_text(wire.data)
        print(_line(fields, event_text))
    if not rows:
        _note("nothing waiting for export")
    elif total > len(rows):
        _note(f"showing the next {len(rows):,} of {total:,} waiting; --limit N for more")
    return 0


def run_exported(args: argparse.Namespace) -> int:
    try:
        window = seconds({"--since": args.since}, "--since", 3600.0, minimum=1)
    except SettingError as error:
        raise CommandFailed(str(error)) from None
    with database() as conn, transaction(conn) as cursor:
        rows = inspection.exported_since(cursor, window, args.limit)
        total = inspection.count_exported_since(cursor, window) if len(rows) == args.limit else len(rows)
    for row in rows:
        print(_line({"id": row.id, "exported_at": row.at.isoformat()}, _published_text(row.payload)))
    if not rows:
        _note(f"nothing exported in the last {args.since}")
    elif total > len(rows):
        _note(f"showing {len(rows):,} of {total:,} (most recent first); --limit N for more")
    return 0


def run_quarantine_list(args: argparse.Namespace) -> int:
    with database() as conn, transaction(conn) as cursor:
        rows = inspection.quarantined(cursor, args.limit)
        total = inspection.count_quarantined(cursor) if len(rows) == args.limit else len(rows)
    for row in rows:
        fields = {
            "id": row.id,
            "quarantined_at": row.at.isoformat(),
            "reason": row.note,
            "withheld": row.withheld,
            "attempts": row.attempts,
        }
        print(_line(fields, _published_text(row.payload)))
    if not rows:
        _note("no quarantined rows")
    elif total > len(rows):
        _note(f"showing {len(rows):,} of {total:,} (most recent first); --limit N for more")
    return 0


def _note(text: str) -> None:
    """A remark for the reader, on stderr: standard output stays one JSON object a line, for jq."""
    print(f"telemetry-export: {text}", file=sys.stderr)


def run_quarantine_requeue(args: argparse.Namespace) -> int:
    ids = None if args.all or args.withheld else _canonical_ids(args.ids)
    with database() as conn, transaction(conn) as cursor:
        requeued = inspection.requeue(cursor, ids, withheld_only=args.withheld)
    print(f"requeued {len(requeued):,} row(s)")
    if ids is not None and len(requeued) < len(ids):
        missing = sorted(set(ids) - set(requeued))
        raise CommandFailed(f"not quarantined (or unknown): {', '.join(missing[:5])}")
    return 0


def _canonical_ids(values: list[str]) -> list[str]:
    bad = [value for value in values if not is_uuid(value)]
    if bad:
        raise CommandFailed(f"{bad[0]!r} is not an event ID (a UUID)")
    return [canonical_uuid(value) for value in values]
