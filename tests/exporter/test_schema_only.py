"""Only what the schema knows leaves: a canary in unknown fields or wire-type tricks reaches no byte sent.

Rows are inserted straight into the queue, as an older or newer writer (or a hostile one) might
have stored them, and exported to a gateway that keeps every request's bytes as received.
"""

from __future__ import annotations

import pytest
from google.protobuf import json_format

from localdev.scripted_gateway import ScriptedGateway
from telemetry_events import pb
from telemetry_events.export_mode import ExportScope
from telemetry_events.redaction import policy_from
from telemetry_export.event_files import read_event_rows
from telemetry_export.recording import record_events, record_rows
from telemetry_export.sample_events import sample_events
from tests.wire_bytes import delimited, fixed64, group

from .conftest import export_to, queue_states

CANARY = b"CANARY-7f3e-do-not-send"


UNKNOWN = delimited(99, CANARY)
# Appended to a serialized Event, each of these merges into the field it names (a repeated
# occurrence of a message field merges), carrying the canary where no redaction rule looks.
TRICKS = {
    "unknown field, top level": UNKNOWN,
    "unknown group, top level": group(98, delimited(1, CANARY)),
    "unknown field in parameters": delimited(6, UNKNOWN),
    "unknown field in user": delimited(7, UNKNOWN),
    "unknown field in interaction.geolocation": delimited(10, delimited(3, UNKNOWN)),
    "unknown field in a kept Struct value": delimited(
        6, delimited(3, delimited(1, delimited(1, b"testField") + delimited(2, delimited(3, b"kept") + UNKNOWN)))
    ),
    "unknown field in the Struct itself": delimited(6, delimited(3, UNKNOWN)),
    "unknown field in a metadata map entry": delimited(
        6, delimited(5, delimited(1, b"k") + fixed64(2, bytes(8)) + UNKNOWN)
    ),
    "unknown field in a feature flag entry": delimited(
        8, delimited(1, delimited(1, b"flag") + delimited(2, b"on") + UNKNOWN)
    ),
    "marketing_tracking encoded as a group": group(9, delimited(1, CANARY)),
    "private_metadata encoded as a group": delimited(
        6, group(3, delimited(1, delimited(1, b"secret") + delimited(2, delimited(3, CANARY))))
    ),
    "source encoded as a group": group(5, delimited(1, delimited(1, CANARY))),
}


@pytest.fixture
def capturing():
    gateway = ScriptedGateway(keep_raw=True, keep_events=True).start()
    yield gateway
    gateway.stop()


def test_no_canary_reaches_the_wire_or_stays_in_the_exported_rows(conn, capturing):
    rows = {}
    for n, (name, trick) in enumerate(TRICKS.items()):
        [event] = sample_events(1, seed=600 + n)
        event.feature, event.action = "example", "example"  # the built-in allowlist keeps testField
        event.ClearField("marketing_tracking")
        event.parameters.ClearField("private_metadata")
        event.parameters.private_metadata.update({"testField": "kept"})
        stored = event.SerializeToString() + trick
        parsed = pb.Event.FromString(stored)  # an event the exporter can read, canary and all
        assert parsed.id == event.id, name
        rows[event.id] = (name, stored)
    cursor = conn.cursor()
    for row_id, (_, stored) in rows.items():
        cursor.execute(
            "INSERT INTO telemetry_events_export_queue (id, timestamp, payload_pb) VALUES (%s, now(), %s)",
            (row_id, stored),
        )
    conn.commit()
    assert all(CANARY in stored for _, stored in rows.values())

    report = export_to(conn, capturing.url)
    assert (report.exported, report.quarantined) == (len(TRICKS), 0)
    assert capturing.raw_requests and not [raw for raw in capturing.raw_requests if CANARY in raw]
    sent = {event.id: event for event in capturing.streams[0].events}
    assert sent.keys() == rows.keys()
    for event in sent.values():
        assert event.parameters.private_metadata["testField"] == "kept"  # what the schema knows still goes
        assert not event.HasField("marketing_tracking")
    # `exported` renders the stored bytes: after export they are exactly the bytes that were sent.
    cursor.execute("SELECT id::text, payload_pb FROM telemetry_events_export_queue")
    for row_id, payload in cursor.fetchall():
        assert CANARY not in bytes(payload), rows[row_id][0]
        assert pb.Event.FromString(bytes(payload)) == sent[row_id]
    conn.commit()
    assert queue_states(conn)["exported"] == len(TRICKS)


def test_rows_with_nothing_to_drop_are_sent_and_kept_byte_for_byte(conn, capturing):
    cursor = conn.cursor()
    before = {}
    for event in sample_events(50, seed=61):
        event.ClearField("marketing_tracking")
        event.parameters.ClearField("private_metadata")
        event.feature_flags.flags.update({"b-flag": "on", "a-flag": "off", "c-flag": "on"})  # map order matters
        before[event.id] = event.SerializeToString(deterministic=True)  # as recording writes them
        cursor.execute(
            "INSERT INTO telemetry_events_export_queue (id, timestamp, payload_pb) VALUES (%s, now(), %s)",
            (event.id, before[event.id]),
        )
    conn.commit()
    export_to(conn, capturing.url)
    sent = {}
    for raw in capturing.raw_requests:
        request = pb.RecordEventsRequest.FromString(raw)
        for event in request.events.events:
            sent[event.id] = event.SerializeToString(deterministic=True)
    cursor.execute("SELECT id::text, payload_pb FROM telemetry_events_export_queue")
    after = {row_id: bytes(payload) for row_id, payload in cursor.fetchall()}
    conn.commit()
    assert after == before == sent
    # And the bytes on the wire are the stored bytes themselves, not a re-encoding of them.
    wire = b"".join(capturing.raw_requests)
    assert all(stored in wire for stored in before.values())


@pytest.mark.parametrize("path", ["events", "jsonl"])
def test_rows_as_recording_writes_them_are_sent_as_stored_and_never_rewritten(conn, capturing, path):
    events = list(sample_events(200, seed=62))
    for n, event in enumerate(events):
        # Maps of many entries, in an order a serializer may choose: the case that can go wrong.
        event.parameters.metadata.update({f"{key}-{n % 7}": float(key) for key in range(12, 0, -1)})
        event.feature_flags.flags.update({f"flag-{key}": "on" for key in "zyxwvu"})
    if path == "events":  # the Python API
        record_events(conn, events, policy_from(), ExportScope())
    else:  # `telemetry-export record FILE.jsonl`, whose lines take their own fast path
        lines = [json_format.MessageToJson(event, indent=None).encode() + b"\n" for event in events]
        record_rows(conn, read_event_rows(lines, "events.jsonl", policy_from(), ExportScope()))
    cursor = conn.cursor()
    cursor.execute("SELECT id::text, payload_pb FROM telemetry_events_export_queue")
    before = {row_id: bytes(payload) for row_id, payload in cursor.fetchall()}
    conn.commit()
    report = export_to(conn, capturing.url)
    assert report.exported == 200
    cursor.execute("SELECT id::text, payload_pb FROM telemetry_events_export_queue")
    after = {row_id: bytes(payload) for row_id, payload in cursor.fetchall()}
    conn.commit()
    assert after == before
    wire = b"".join(capturing.raw_requests)
    assert all(stored in wire for stored in before.values())  # the stored bytes themselves went out
