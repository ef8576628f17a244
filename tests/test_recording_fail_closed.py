"""Fail-closed recording: only fields the schema knows, encoded as it says, enter the queue or leave.

Each event carries canaries where redaction does not look: unknown fields of every wire
type at every level (top, parameters, user, source, inside the Struct, inside a kept
Value, inside map entries), and known fields sent with the wrong wire type (for example
`marketing_tracking` as a group, which `HasField` does not see). After `record_events`,
no canary is in the queue's bytes, nor in the bytes a real gRPC server receives when the
real exporter sends the queue to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localdev.scripted_gateway import ScriptedGateway
from telemetry_events import pb
from telemetry_events.export_mode import ExportScope
from telemetry_events.ids import new_event_id
from telemetry_events.redaction import policy_from
from telemetry_export.exporter import run_export
from telemetry_export.gateway_client import open_channel, parse_gateway_addr
from telemetry_export.recording import record_events
from telemetry_export.settings import ExporterSettings, GatewayIdentity
from tests.wire_bytes import END_GROUP, FIXED64, START_GROUP, VARINT, delimited, tag, varint

POLICY = policy_from()  # built in: example/example may send its private key testField
ALL = ExportScope()


def _field(number: int, trick: str, canary: bytes) -> bytes:
    """One field numbered `number` carrying `canary`, encoded with the wire type `trick` names."""
    if trick == "delimited":
        return delimited(number, canary)
    if trick == "group":
        return tag(number, START_GROUP) + delimited(1, canary) + tag(number, END_GROUP)
    if trick == "nested group":
        inner = tag(2, START_GROUP) + delimited(3, canary) + tag(2, END_GROUP)
        return tag(number, START_GROUP) + inner + tag(number, END_GROUP)
    if trick == "fixed64":
        return tag(number, FIXED64) + canary[-8:]
    assert trick == "varint"
    return tag(number, VARINT) + varint(int.from_bytes(canary[-8:], "little"))


def _canary_bytes(canary: bytes, trick: str) -> bytes:
    """What of `canary` is visible in the bytes of a field encoded with `trick`."""
    if trick == "varint":
        return varint(int.from_bytes(canary[-8:], "little"))
    return canary[-8:] if trick == "fixed64" else canary


# Where a canary goes: a message reachable from the event, and the wire types its known
# fields do NOT use (so that sending one of them with that type is a wire-type trick).
_TARGETS = {
    "event": ("", {1: "delimited", 2: "delimited", 6: "delimited", 9: "delimited", 7: "delimited"}),
    "timestamp": ("timestamp", {1: "varint", 2: "varint"}),
    "source": ("source", {1: "delimited", 2: "delimited"}),
    "source.client": ("source.client", {1: "delimited", 2: "delimited"}),
    "parameters": ("parameters", {1: "varint", 2: "delimited", 3: "delimited", 5: "delimited"}),
    "billing": ("parameters.billing_metadata", {1: "delimited"}),
    "user": ("user", {1: "varint", 2: "delimited"}),
    "feature flags": ("feature_flags", {1: "delimited"}),
    "interaction": ("interaction", {1: "delimited", 3: "delimited"}),
    "private metadata (Struct)": ("parameters.private_metadata", {1: "delimited"}),
    "kept Value": ("kept value", {3: "delimited", 5: "delimited"}),
    "dropped Value": ("dropped value", {3: "delimited", 5: "delimited"}),
}
# Map entries are not messages one can hold: they are written as bytes into their parent.
_MAP_ENTRIES = {
    "metadata entry": ("parameters", 5, delimited(1, b"durationMs") + tag(2, FIXED64) + b"\x00" * 8),
    "legacy metadata entry": ("parameters", 2, delimited(1, b"count") + tag(2, VARINT) + b"\x07"),
    "feature flag entry": ("feature_flags", 1, delimited(1, b"flag") + delimited(2, b"on")),
    "Struct entry": ("parameters.private_metadata", 1, delimited(1, b"other") + delimited(2, b"\x1a\x01v")),
}
_TRICKS = ("delimited", "group", "nested group", "fixed64", "varint")


@dataclass(frozen=True)
class Injection:
    place: str
    number: int  # 0: a known field of the place, sent with a wire type it does not have
    trick: str


injections = st.builds(
    Injection,
    place=st.sampled_from(sorted(_TARGETS) + sorted(_MAP_ENTRIES)),
    number=st.one_of(st.just(0), st.integers(20, 18_999), st.integers(20_000, 2**29 - 1)),
    trick=st.sampled_from(_TRICKS),
)
event_plans = st.lists(
    st.tuples(st.sampled_from([("example", "example"), ("search", "submit")]), st.lists(injections, max_size=4)),
    min_size=1,
    max_size=4,
)


def _base_event(feature: str, action: str) -> pb.Event:
    event = pb.Event(id=new_event_id(), feature=feature, action=action)
    event.timestamp.FromJsonString("2026-01-02T03:04:05Z")
    event.source.server.version = "6.1.0"
    event.source.client.name = "WEB"
    event.parameters.version = 1
    event.parameters.metadata["durationMs"] = 1.5
    event.parameters.private_metadata.update({"testField": "kept", "query": "dropped"})
    event.parameters.billing_metadata.product = "cody"
    event.user.user_id = 7
    event.feature_flags.flags["f"] = "on"
    event.interaction.trace_id = "trace"
    return event


def _message_at(event: pb.Event, path: str):
    if path == "kept value":
        return event.parameters.private_metadata.fields["testField"]
    if path == "dropped value":
        return event.parameters.private_metadata.fields["query"]
    message = event
    for name in filter(None, path.split(".")):
        message = getattr(message, name)
    return message


def _inject(event: pb.Event, injection: Injection, canary: bytes) -> bytes:
    """Plants `canary` as `injection` says; returns the bytes of it that must never leave."""
    if injection.place in _MAP_ENTRIES:
        parent, map_field, entry = _MAP_ENTRIES[injection.place]
        number = injection.number or 1  # 0: the entry's key, with a wire type it does not have
        trick = injection.trick if injection.number else "group"
        _message_at(event, parent).MergeFromString(delimited(map_field, entry + _field(number, trick, canary)))
        return _canary_bytes(canary, trick)
    path, wrong_types = _TARGETS[injection.place]
    number, trick = injection.number, injection.trick
    if number == 0:  # a known field with a wire type it does not have (a group, when the draw is its own type)
        number, own_type = sorted(wrong_types.items())[len(canary) % len(wrong_types)]
        if trick == own_type or (own_type == "varint" and trick == "delimited"):
            trick = "group"  # its own type would be decoded as the field; packed varints would be too
    _message_at(event, path).MergeFromString(_field(number, trick, canary))
    return _canary_bytes(canary, trick)


@pytest.fixture(scope="module")
def capturing_gateway():
    server = ScriptedGateway(keep_raw=True).start()
    yield server
    server.stop()


def _export(conn, gateway: ScriptedGateway):
    settings = ExporterSettings(
        gateway_addr=gateway.url,
        batch_size=100,
        identity=GatewayIdentity(instance_id="fail-closed-test", external_url="https://sg.example.com"),
    )
    return run_export(conn, settings, POLICY, lambda: open_channel(parse_gateway_addr(gateway.url)))


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # repeatable: the same cases every run
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(plans=event_plans)
def test_no_canary_reaches_the_queue_or_the_wire(conn, capturing_gateway, plans):
    cursor = conn.cursor()
    cursor.execute("TRUNCATE telemetry_events_export_queue, event_logs")
    conn.commit()
    events, canaries = [], []
    for (feature, action), planned in plans:
        event = _base_event(feature, action)
        for injection in planned:
            canary = f"CANARY-{event.id}-#{len(canaries):05d}~~".encode()  # its last 8 bytes unique too
            canaries.append(_inject(event, injection, canary))
        events.append(event)
    sent_by_caller = [event.SerializeToString() for event in events]
    for canary in canaries:  # each canary really is in what the caller hands over
        assert any(canary in data for data in sent_by_caller)

    result = record_events(conn, events, POLICY, ALL)

    assert [event.SerializeToString() for event in events] == sent_by_caller  # the caller's events untouched
    assert (result.recorded, result.queued) == (len(events), len(events))
    cursor.execute("SELECT payload_pb FROM telemetry_events_export_queue")
    queued = [bytes(row[0]) for row in cursor.fetchall()]
    conn.commit()
    assert [canary for canary in canaries if any(canary in payload for payload in queued)] == []
    features = {event.id: event.feature for event in events}
    for payload in queued:  # redaction still kept what the allowlist allows: these are real payloads
        sent = pb.Event.FromString(payload)
        assert set(sent.parameters.private_metadata) == ({"testField"} if features[sent.id] == "example" else set())

    capturing_gateway.raw_requests.clear()
    report = _export(conn, capturing_gateway)
    assert report.exported == len(events)
    wire = b"".join(capturing_gateway.raw_requests)
    assert all(event.id.encode() in wire for event in events)
    assert [canary for canary in canaries if canary in wire] == []


def test_a_known_field_sent_as_a_group_is_dropped_not_carried(conn):
    """The case that slipped past redaction: marketing tracking as a group is invisible to HasField."""
    event = _base_event("search", "submit")
    event.MergeFromString(_field(9, "group", b"https://tracking.example.com/?q=secret"))
    assert not event.HasField("marketing_tracking")
    assert b"tracking.example.com" in event.SerializeToString()
    record_events(conn, [event], POLICY, ALL)
    cursor = conn.cursor()
    cursor.execute("SELECT payload_pb FROM telemetry_events_export_queue")
    [(payload,)] = cursor.fetchall()
    conn.commit()
    assert b"tracking.example.com" not in bytes(payload)
    expected = pb.Event()
    expected.CopyFrom(event)
    expected.DiscardUnknownFields()
    POLICY.redact(expected)
    assert pb.Event.FromString(bytes(payload)) == expected
