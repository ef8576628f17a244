"""The wire API is pinned: names, numbers, types and presence, and old payloads still parse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FieldDescriptor

from telemetry_events import pb
from telemetry_events.telemetrygateway.v1 import telemetrygateway_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS = sorted((ROOT / "tests" / "snapshots").glob("event-*.binpb"))

# (message, field): (number, type, label, explicit presence). Transcribed from the reference API.
STRING, INT32, INT64, DOUBLE, MESSAGE = (
    FieldDescriptor.TYPE_STRING,
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_DOUBLE,
    FieldDescriptor.TYPE_MESSAGE,
)
PINNED = {
    "Identifier": {
        "licensed_instance": (1, MESSAGE),
        "unlicensed_instance": (2, MESSAGE),
        "managed_service": (3, MESSAGE),
    },
    "Identifier.LicensedInstanceIdentifier": {
        "license_key": (1, STRING),
        "instance_id": (2, STRING),
        "external_url": (3, STRING),
    },
    "Identifier.UnlicensedInstanceIdentifier": {"instance_id": (1, STRING), "external_url": (2, STRING)},
    "Identifier.ManagedServiceIdentifier": {"service_id": (1, STRING), "service_environment": (2, STRING)},
    "RecordEventsRequestMetadata": {"request_id": (1, STRING), "identifier": (2, MESSAGE)},
    "RecordEventsRequest": {"metadata": (1, MESSAGE), "events": (2, MESSAGE)},
    "RecordEventsRequest.EventsPayload": {"events": (1, MESSAGE)},
    "RecordEventsResponse": {"succeeded_events": (1, STRING)},
    "RecordEventRequest": {"metadata": (1, MESSAGE), "event": (2, MESSAGE)},
    "RecordEventResponse": {},
    "Event": {
        "id": (1, STRING),
        "timestamp": (2, MESSAGE),
        "feature": (3, STRING),
        "action": (4, STRING),
        "source": (5, MESSAGE),
        "parameters": (6, MESSAGE),
        "user": (7, MESSAGE),
        "feature_flags": (8, MESSAGE),
        "marketing_tracking": (9, MESSAGE),
        "interaction": (10, MESSAGE),
    },
    "EventSource": {"server": (1, MESSAGE), "client": (2, MESSAGE)},
    "EventSource.Server": {"version": (1, STRING)},
    "EventSource.Client": {"name": (1, STRING), "version": (2, STRING)},
    "EventParameters": {
        "version": (1, INT32),
        "legacy_metadata": (2, MESSAGE),
        "private_metadata": (3, MESSAGE),
        "billing_metadata": (4, MESSAGE),
        "metadata": (5, MESSAGE),
    },
    "EventBillingMetadata": {"product": (1, STRING), "category": (2, STRING)},
    "EventUser": {"user_id": (1, INT64), "anonymous_user_id": (2, STRING), "sams_external_id": (3, STRING)},
    "EventFeatureFlags": {"flags": (1, MESSAGE)},
    "EventMarketingTracking": {
        name: (number, STRING)
        for number, name in enumerate(
            (
                "url",
                "first_source_url",
                "cohort_id",
                "referrer",
                "last_source_url",
                "device_session_id",
                "session_referrer",
                "session_first_url",
            ),
            start=1,
        )
    },
    "EventInteraction": {"trace_id": (1, STRING), "interaction_id": (2, STRING), "geolocation": (3, MESSAGE)},
    "EventInteraction.Geolocation": {"country_code": (1, STRING)},
}
# Fields declared `optional` in proto3: their presence is part of the contract.
PROTO3_OPTIONAL = {
    ("Identifier.ManagedServiceIdentifier", "service_environment"),
    ("Event", "user"),
    ("Event", "feature_flags"),
    ("Event", "marketing_tracking"),
    ("Event", "interaction"),
    ("EventSource", "client"),
    ("EventSource.Client", "version"),
    ("EventParameters", "private_metadata"),
    ("EventParameters", "billing_metadata"),
    ("EventUser", "user_id"),
    ("EventUser", "anonymous_user_id"),
    ("EventUser", "sams_external_id"),
    *(("EventMarketingTracking", name) for name in PINNED["EventMarketingTracking"]),
    ("EventInteraction", "trace_id"),
    ("EventInteraction", "interaction_id"),
    ("EventInteraction", "geolocation"),
}
MAPS = {
    ("EventParameters", "legacy_metadata"): INT64,
    ("EventParameters", "metadata"): DOUBLE,
    ("EventFeatureFlags", "flags"): STRING,
}
REPEATED = {("RecordEventsRequest.EventsPayload", "events"), ("RecordEventsResponse", "succeeded_events")}


def _descriptor(path: str):
    descriptor = pb.DESCRIPTOR.message_types_by_name[path.split(".")[0]]
    for nested in path.split(".")[1:]:
        descriptor = descriptor.nested_types_by_name[nested]
    return descriptor


def test_package_and_service_keep_their_reference_names():
    assert pb.DESCRIPTOR.package == "telemetrygateway.v1"
    service = pb.DESCRIPTOR.services_by_name["TelemeteryGatewayService"]
    methods = {m.name: m for m in service.methods}
    assert set(methods) == {"RecordEvents", "RecordEvent"}
    record_events = methods["RecordEvents"]
    assert record_events.input_type.name == "RecordEventsRequest"
    assert record_events.output_type.name == "RecordEventsResponse"
    assert record_events.client_streaming and record_events.server_streaming
    assert not methods["RecordEvent"].client_streaming and not methods["RecordEvent"].server_streaming
    assert hasattr(telemetrygateway_pb2_grpc, "TelemeteryGatewayServiceStub")


def test_every_message_is_pinned_and_nothing_else_exists():
    found = set()

    def walk(descriptor, prefix=""):
        for nested in descriptor.nested_types:
            if not nested.GetOptions().map_entry:
                walk(nested, f"{prefix}{descriptor.name}.")
        found.add(f"{prefix}{descriptor.name}")

    for message in pb.DESCRIPTOR.message_types_by_name.values():
        walk(message)
    assert found == set(PINNED)


def _field_protos(message: str) -> dict[str, descriptor_pb2.FieldDescriptorProto]:
    proto = descriptor_pb2.DescriptorProto()
    _descriptor(message).CopyToProto(proto)
    return {f.name: f for f in proto.field}


@pytest.mark.parametrize("message", sorted(PINNED))
def test_field_names_numbers_and_types_are_pinned(message):
    descriptor = _descriptor(message)
    actual = {f.name: (f.number, f.type) for f in descriptor.fields}
    assert actual == PINNED[message]
    protos = _field_protos(message)
    for field in descriptor.fields:
        key = (message, field.name)
        assert protos[field.name].proto3_optional == (key in PROTO3_OPTIONAL), key
        if key in MAPS:
            assert field.message_type.GetOptions().map_entry
            assert field.message_type.fields_by_name["value"].type == MAPS[key]
        assert field.is_repeated == (key in MAPS or key in REPEATED), key


def test_oneofs_are_pinned():
    assert [f.name for f in _descriptor("Identifier").oneofs_by_name["identifier"].fields] == [
        "licensed_instance",
        "unlicensed_instance",
        "managed_service",
    ]
    assert [f.name for f in _descriptor("RecordEventsRequest").oneofs_by_name["payload"].fields] == [
        "metadata",
        "events",
    ]


def test_there_is_at_least_one_snapshot():
    assert SNAPSHOTS, "tests/snapshots holds no event-*.binpb: run scripts/write_event_snapshot.py"


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=lambda p: p.name)
def test_snapshot_parses_round_trips_and_keeps_every_field(snapshot: Path):
    data = snapshot.read_bytes()
    event = pb.Event.FromString(data)
    assert event.SerializeToString(deterministic=True) == data
    assert {f.name for f, _ in event.ListFields()} == {f.name for f in pb.Event.DESCRIPTOR.fields}
    assert event.parameters.legacy_metadata["legacyCount"] == 9_007_199_254_740_993
    assert {f.name for f, _ in event.marketing_tracking.ListFields()} == set(PINNED["EventMarketingTracking"])
    assert event.interaction.geolocation.country_code == "NZ"


def test_checked_in_generated_code_is_current():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate_api.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
