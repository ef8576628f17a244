"""From one event to its Pub/Sub message: merging, attributes, limits and dead letters."""

from __future__ import annotations

import json

import pytest
from gateway_testing import make_event

from gateway_run.decoding import EventHead, UndecodableEvent
from gateway_run.pubsub_messages import (
    Outgoing,
    StreamContext,
    Unpublishable,
    attribute_problem,
    attributes_for,
    message_size,
    prepare,
    truncate_utf8,
    undecodable,
)
from telemetry_events import pb
from telemetry_events.published_form import merge_legacy_metadata
from telemetry_events.redaction import policy_from

CONTEXT = StreamContext(source="licensed_instance", metadata_json='{"requestId":"r"}', managed=False, request_id="r")
POLICY = policy_from()


def test_legacy_metadata_is_merged_as_doubles_and_metadata_wins_a_conflict() -> None:
    event = pb.Event()
    event.parameters.legacy_metadata.update({"count": 3, "both": 1, "big": 2**60})
    event.parameters.metadata["both"] = 2.5

    merge_legacy_metadata(event)

    assert dict(event.parameters.metadata) == {"count": 3.0, "both": 2.5, "big": float(2**60)}
    assert not event.parameters.legacy_metadata


def test_records_private_metadata_flags_become_attributes_only_when_positive_and_named() -> None:
    event = pb.Event(id="i", feature="f", action="a")
    event.parameters.metadata.update(
        {
            "recordsPrivateMetadataTranscript": 1,
            "recordsPrivateMetadataSearch": 0,
            "recordsPrivateMetadata": 5,
            "recordsPrivateMetadataNegative": -1,
            "otherCount": 9,
        }
    )

    assert attributes_for("src", event) == {
        "publisher.source": "src",
        "event.id": "i",
        "event.feature": "f",
        "event.action": "a",
        "event.hasPrivateMetadata": "false",
        "event.recordsPrivateMetadataTranscript": "true",
    }


def test_has_private_metadata_means_some_survived_redaction() -> None:
    event = pb.Event()
    event.parameters.private_metadata.SetInParent()
    assert attributes_for("s", event)["event.hasPrivateMetadata"] == "false"
    event.parameters.private_metadata.update({"testField": "x"})
    assert attributes_for("s", event)["event.hasPrivateMetadata"] == "true"


@pytest.mark.parametrize(
    ("attributes", "problem"),
    [
        ({f"k{n}": "v" for n in range(101)}, "101 attributes"),
        ({"k" * 257: "v"}, "over 256 bytes"),
        ({"é" * 129: "v"}, "over 256 bytes"),  # 129 characters, 258 bytes
        ({"k": "v" * 1025}, "value over 1024 bytes"),
        ({"k": "€" * 342}, "value over 1024 bytes"),  # 342 characters, 1026 bytes
    ],
)
def test_attribute_limits_are_counted_in_bytes(attributes: dict[str, str], problem: str) -> None:
    assert problem in (attribute_problem(attributes) or "")


def test_attributes_at_the_limits_pass() -> None:
    assert attribute_problem({f"k{n}": "v" for n in range(100)}) is None
    assert attribute_problem({"é" * 128: "€" * 341}) is None


def test_message_size_counts_data_and_attribute_bytes() -> None:
    assert message_size(b"12345", {"ab": "c", "é": "€"}) == 5 + 3 + 2 + 3


def test_truncation_never_splits_a_character() -> None:
    assert truncate_utf8("aé€", 3) == "aé"
    assert truncate_utf8("aé€", 5) == "aé"
    assert truncate_utf8("aé€", 6) == "aé€"


def test_a_valid_event_becomes_its_message_redacted_before_rendering() -> None:
    event = make_event(1)

    prepared = prepare(event, CONTEXT, POLICY, 100_000)

    assert isinstance(prepared, Outgoing)
    body = json.loads(prepared.data)
    assert body["metadata"] == {"requestId": "r"}
    assert "marketingTracking" not in body["event"] and "privateMetadata" not in body["event"]["parameters"]
    assert body["event"]["parameters"]["metadata"]["durationMs"] == 1201.0


def test_an_invalid_event_is_dead_lettered_whole_but_redacted() -> None:
    event = make_event(1, feature="")

    prepared = prepare(event, CONTEXT, POLICY, 100_000)

    assert isinstance(prepared, Unpublishable) and prepared.reason == "invalid"
    body = json.loads(prepared.dead_letter.data)
    assert body["reason"] == "invalid" and body["detail"] == "feature is required"
    assert body["event"]["id"] == event.id and "marketingTracking" not in body["event"]
    assert b"secret-query-do-not-leak" not in prepared.dead_letter.data
    assert prepared.dead_letter.attributes["reason"] == "invalid"


def test_an_event_without_json_form_is_dead_lettered_as_text() -> None:
    event = make_event(1)
    event.timestamp.seconds = 300_000_000_000  # the year 11476: valid protobuf, beyond protojson's range

    prepared = prepare(event, CONTEXT, POLICY, 100_000)

    assert isinstance(prepared, Unpublishable) and prepared.reason == "unencodable"
    body = json.loads(prepared.dead_letter.data)
    assert "eventText" in body and "event" not in body and len(body["eventText"].encode()) <= 4096
    assert event.id in body["eventText"] and "secret-query-do-not-leak" not in body["eventText"]


def test_an_oversized_event_leaves_only_a_bounded_excerpt() -> None:
    event = make_event(1)
    event.feature_flags.flags["huge"] = "é" * 50_000

    prepared = prepare(event, CONTEXT, POLICY, 20_000)

    assert isinstance(prepared, Unpublishable) and prepared.reason == "oversized"
    body = json.loads(prepared.dead_letter.data)
    assert body["size"] > 100_000 and prepared.dead_letter.attributes["size"] == str(body["size"])
    assert len(body["eventExcerpt"].encode()) <= 4096 and "event" not in body
    assert len(prepared.dead_letter.data) < 8_000


def test_the_id_is_published_canonical_and_acknowledged_as_sent() -> None:
    event = make_event(1)
    canonical = event.id
    event.id = "{" + canonical.upper() + "}"

    prepared = prepare(event, CONTEXT, POLICY, 100_000)

    assert isinstance(prepared, Outgoing)
    assert prepared.event_id == "{" + canonical.upper() + "}"
    assert prepared.attributes["event.id"] == canonical
    assert json.loads(prepared.data)["event"]["id"] == canonical


def test_a_dead_letter_carries_the_canonical_id_too_and_is_acknowledged_as_sent() -> None:
    event = make_event(1, feature="Not Valid")
    canonical = event.id
    event.id = canonical.replace("-", "").upper()

    prepared = prepare(event, CONTEXT, POLICY, 100_000)

    assert isinstance(prepared, Unpublishable)
    assert prepared.event_id == canonical.replace("-", "").upper()
    assert prepared.dead_letter.attributes["event.id"] == canonical
    assert json.loads(prepared.dead_letter.data)["event"]["id"] == canonical


def test_an_id_that_is_no_uuid_is_invalid_and_kept_as_sent() -> None:
    prepared = prepare(make_event(1, id="not-a-uuid"), CONTEXT, POLICY, 100_000)

    assert isinstance(prepared, Unpublishable) and prepared.detail == "id 'not-a-uuid' is not a UUID"
    assert prepared.event_id == prepared.dead_letter.attributes["event.id"] == "not-a-uuid"


def test_an_undecodable_event_is_dead_lettered_with_what_identifies_it_and_no_content() -> None:
    head = EventHead(id="0190F3C2-7A41-7C3E-9D2A-5B8E4F1A2C3D", feature="search", action="vi\ufffdewed")

    dead = undecodable(5000, UndecodableEvent("a string field is not valid UTF-8", head), CONTEXT)

    assert (dead.event_id, dead.reason, dead.size) == (head.id, "undecodable", 5000)
    assert json.loads(dead.dead_letter.data) == {
        "metadata": {"requestId": "r"},
        "reason": "undecodable",
        "detail": "event of 5000 bytes does not decode: a string field is not valid UTF-8",
        "size": 5000,
    }
    assert dead.dead_letter.attributes == {
        "reason": "undecodable",
        "publisher.source": "licensed_instance",
        "event.id": "0190f3c2-7a41-7c3e-9d2a-5b8e4f1a2c3d",
        "event.feature": "search",
        "event.action": "vi\ufffdewed",
        "size": "5000",
    }
