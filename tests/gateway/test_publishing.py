"""Events through a real gateway into the real emulator: what arrives, exactly, and what never does."""

from __future__ import annotations

import hashlib
from typing import Any

import grpc
from gateway_testing import (
    EXTERNAL_URL,
    INSTANCE_ID,
    Gateway,
    OpenStream,
    PubSub,
    ServiceToken,
    dev_gateway_env,
    event_dict,
    events_request,
    gateway_env,
    licensed_metadata,
    make_event,
    managed_metadata,
    record_event,
    record_events,
    unlicensed_metadata,
)

from gateway_run.decoding import events_request_bytes
from localdev.gateway import DevelopmentLicense, start_gateway
from telemetry_events import pb
from telemetry_events.ids import new_event_id


def expected_event(sent: pb.Event) -> dict[str, Any]:
    """What the gateway must publish for `sent`, derived here independently of the gateway's code."""
    event = pb.Event()
    event.CopyFrom(sent)
    for key, value in sent.parameters.legacy_metadata.items():
        if key not in event.parameters.metadata:
            event.parameters.metadata[key] = float(value)
    event.parameters.ClearField("legacy_metadata")
    event.ClearField("marketing_tracking")
    if (event.feature, event.action) == ("example", "example"):  # the built-in allowlist entry
        for key in list(event.parameters.private_metadata.fields):
            if key != "testField":
                del event.parameters.private_metadata.fields[key]
    else:
        event.parameters.ClearField("private_metadata")
    return event_dict(event)


def expected_attributes(sent: pb.Event, source: str) -> dict[str, str]:
    allowlisted = (sent.feature, sent.action) == ("example", "example") and "testField" in (
        sent.parameters.private_metadata.fields
    )
    attributes = {
        "publisher.source": source,
        "event.id": sent.id,
        "event.feature": sent.feature,
        "event.action": sent.action,
        "event.hasPrivateMetadata": "true" if allowlisted else "false",
    }
    for key, value in sent.parameters.metadata.items():
        if key.startswith("recordsPrivateMetadata") and len(key) > len("recordsPrivateMetadata") and value > 0:
            attributes[f"event.{key}"] = "true"
    return attributes


def test_batches_land_in_the_topic_with_exact_bodies_and_attributes(
    gateway: Gateway, pubsub: PubSub, license_key: str
) -> None:
    batches = [
        [make_event(n) for n in range(40)],
        [make_event(n, feature="example", action="example") for n in range(40, 80)],
        [make_event(n, action="clicked") for n in range(80, 120)],
    ]
    metadata = licensed_metadata(license_key, request_id="request-exact-bodies")

    result = record_events(gateway.address, [metadata, *(events_request(batch) for batch in batches)])

    assert result.code == grpc.StatusCode.OK, result.details
    assert [list(r.succeeded_events) for r in result.responses] == [[e.id for e in batch] for batch in batches]
    sent = {event.id: event for batch in batches for event in batch}
    received = pubsub.pull(gateway.subscription, sent)
    fingerprint = "sha256:" + hashlib.sha256(license_key.encode()).hexdigest()
    expected_metadata = {
        "requestId": "request-exact-bodies",
        "identifier": {
            "licensedInstance": {"licenseKey": fingerprint, "instanceId": INSTANCE_ID, "externalUrl": EXTERNAL_URL}
        },
    }
    for event_id, message in received.items():
        assert message.data == {"metadata": expected_metadata, "event": expected_event(sent[event_id])}
        assert message.attributes == expected_attributes(sent[event_id], "licensed_instance")


def test_sensitive_fields_and_the_license_key_never_leave(gateway: Gateway, pubsub: PubSub, license_key: str) -> None:
    events = [make_event(n) for n in range(10)] + [make_event(n, feature="example", action="example") for n in range(3)]

    result = record_events(gateway.address, [licensed_metadata(license_key), events_request(events)])

    assert result.code == grpc.StatusCode.OK, result.details
    received = pubsub.pull(gateway.subscription, [e.id for e in events])
    raw = b"\n".join(m.raw + repr(m.attributes).encode() for m in received.values())
    claims, signature = license_key.split(".")[1:]
    for secret in (license_key, claims, signature, "secret-query-do-not-leak", "secret-campaign", "cohort-secret"):
        assert secret.encode() not in raw
        assert secret not in gateway.process.log_text()
    for message in received.values():
        assert "marketingTracking" not in message.data["event"]
        private = message.data["event"]["parameters"].get("privateMetadata")
        if message.data["event"]["feature"] == "example":
            assert private == {"testField": "kept?"}
        else:
            assert private is None


def test_events_that_can_never_be_published_are_acknowledged_and_dead_lettered_with_their_reason(
    gateway: Gateway, pubsub: PubSub, license_key: str
) -> None:
    valid = make_event(1)
    bad_name = make_event(2, feature="Search Results")
    no_timestamp = make_event(3)
    no_timestamp.ClearField("timestamp")
    oversized = make_event(4)
    oversized.feature_flags.flags["huge"] = "x" * 30_000  # the gateway's limit here is 20,000 bytes
    long_attribute = make_event(5)
    long_attribute.parameters.metadata["recordsPrivateMetadata" + "X" * 300] = 1.0
    too_many_attributes = make_event(6)
    for n in range(100):
        too_many_attributes.parameters.metadata[f"recordsPrivateMetadataKind{n}"] = 1.0
    unpublishable = [bad_name, no_timestamp, oversized, long_attribute, too_many_attributes]

    result = record_events(gateway.address, [licensed_metadata(license_key), events_request([valid, *unpublishable])])

    assert result.code == grpc.StatusCode.OK, result.details
    assert result.acknowledged == [valid.id] + [e.id for e in unpublishable]
    assert set(pubsub.pull(gateway.subscription, [valid.id])) == {valid.id}
    dead = pubsub.pull(gateway.deadletter_subscription, [e.id for e in unpublishable])
    assert {event_id: m.attributes["reason"] for event_id, m in dead.items()} == {
        bad_name.id: "invalid",
        no_timestamp.id: "invalid",
        oversized.id: "oversized",
        long_attribute.id: "attributes",
        too_many_attributes.id: "attributes",
    }
    assert "feature 'Search Results' must be" in dead[bad_name.id].data["detail"]
    assert dead[no_timestamp.id].data["detail"] == "timestamp is required"
    big = dead[oversized.id]
    assert int(big.attributes["size"]) == big.data["size"] > 30_000
    assert "event" not in big.data and 0 < len(big.data["eventExcerpt"].encode()) <= 4096
    assert len(big.raw) < 8192
    assert dead[bad_name.id].data["event"]["feature"] == "Search Results"
    for message in dead.values():
        assert message.data["metadata"]["identifier"]["licensedInstance"]["licenseKey"].startswith("sha256:")
        assert b"secret-query-do-not-leak" not in message.raw and b"secret-campaign" not in message.raw
    assert pubsub.drain(gateway.subscription, quiet_seconds=0.5) == []  # none of them went to the events topic
    stream_line = [r for r in gateway.process.log_records() if r.get("message") == "RecordEvents stream ended"][-1]
    assert (stream_line["events_published"], stream_line["events_dead_lettered"]) == (1, 5)


def test_managed_services_publish_under_their_own_name_and_are_told_about_bad_events(
    gateway: Gateway, pubsub: PubSub, service_token: ServiceToken
) -> None:
    good, bad = make_event(1), make_event(2, action="")
    single = make_event(3)
    metadata = managed_metadata("cody-gateway")

    stream = record_events(
        gateway.address, [pb.RecordEventsRequest(metadata=metadata), events_request([good, bad])], service_token.headers
    )
    headers = service_token.headers
    unary_ok = record_event(gateway.address, pb.RecordEventRequest(metadata=metadata, event=single), headers)
    unary_bad = record_event(gateway.address, pb.RecordEventRequest(metadata=metadata, event=bad), headers)

    assert stream.code == grpc.StatusCode.OK and stream.acknowledged == [good.id]  # bad is reported, not acknowledged
    assert unary_ok == (grpc.StatusCode.OK, "")
    assert unary_bad[0] == grpc.StatusCode.INVALID_ARGUMENT and "action is required" in unary_bad[1]
    received = pubsub.pull(gateway.subscription, [good.id, single.id])
    for message in received.values():
        assert message.attributes["publisher.source"] == "cody-gateway"
        assert message.data["metadata"]["identifier"] == {
            "managedService": {"serviceId": "cody-gateway", "serviceEnvironment": "prod"}
        }
    assert bad.id not in {m.attributes.get("event.id") for m in pubsub.drain(gateway.deadletter_subscription, 0.5)}
    assert service_token.token not in gateway.process.log_text()


def test_unlicensed_instances_are_accepted_when_allowed(gateway: Gateway, pubsub: PubSub) -> None:
    event = make_event(1)

    result = record_events(gateway.address, [unlicensed_metadata(), events_request([event])])

    assert result.code == grpc.StatusCode.OK and result.acknowledged == [event.id]
    message = pubsub.pull(gateway.subscription, [event.id])[event.id]
    assert message.attributes["publisher.source"] == "unlicensed_instance"
    assert message.data["metadata"]["identifier"] == {
        "unlicensedInstance": {"instanceId": INSTANCE_ID, "externalUrl": EXTERNAL_URL}
    }


def test_in_process_workers_publish_the_same_way(
    pubsub: PubSub, dev_license: DevelopmentLicense, service_token: ServiceToken, license_key: str
) -> None:
    topic_id, subscription = pubsub.topic("in-process")
    env = gateway_env(dev_license, service_token, TELEMETRY_PUBSUB_TOPIC=topic_id, TELEMETRY_GATEWAY_WORKERS="0")
    events = [make_event(n) for n in range(30)]

    with start_gateway(env) as process:
        result = record_events(
            process.address, [licensed_metadata(license_key), events_request(events[:15]), events_request(events[15:])]
        )
        assert process.terminate() == 0

    assert result.code == grpc.StatusCode.OK and result.acknowledged == [e.id for e in events]
    received = pubsub.pull(subscription, [e.id for e in events])
    assert all(received[e.id].data["event"] == expected_event(e) for e in events)


def test_development_mode_logs_each_payload_instead_of_publishing(
    dev_license: DevelopmentLicense, service_token: ServiceToken, license_key: str
) -> None:
    env = dev_gateway_env(dev_license, service_token)
    env["GOOGLE_CLOUD_PROJECT"] = ""
    event = make_event(7)

    with start_gateway(env, inherit_env=False) as process:
        result = record_events(process.address, [licensed_metadata(license_key), events_request([event])])
        records = process.log_records()
        log = process.log_text()

    assert result.code == grpc.StatusCode.OK and result.acknowledged == [event.id]
    logged = [r for r in records if r.get("message") == "development mode: message not published"]
    assert len(logged) == 1
    assert logged[0]["payload"]["event"] == expected_event(event)
    assert logged[0]["attributes"]["event.id"] == event.id
    assert license_key not in log and "secret-query-do-not-leak" not in log


def test_an_empty_events_message_gets_an_empty_response_and_metadata_alone_is_a_valid_stream(
    gateway: Gateway, license_key: str
) -> None:
    empty = record_events(gateway.address, [licensed_metadata(license_key), events_request([])])
    metadata_only = record_events(gateway.address, [licensed_metadata(license_key)])

    assert (empty.code, [list(r.succeeded_events) for r in empty.responses]) == (grpc.StatusCode.OK, [[]])
    assert (metadata_only.code, metadata_only.responses) == (grpc.StatusCode.OK, [])


def test_an_undecodable_event_costs_only_itself_and_the_stream_stays_open(
    gateway: Gateway, pubsub: PubSub, license_key: str
) -> None:
    from test_decoding import length_delimited, nested_event

    healthy = [make_event(n) for n in range(6)]
    too_deep = nested_event(48, leaf=length_delimited(5, length_delimited(1, length_delimited(1, b"secret-leaf"))))
    garbage = b"\x0f\xff\x00 not an event at all"
    bad_utf8 = make_event(9).SerializeToString().replace(b"search.results", b"search.re\xffults")
    raw_events = [e.SerializeToString() for e in healthy[:3]] + [too_deep, garbage, bad_utf8]
    raw_events += [e.SerializeToString() for e in healthy[3:]]
    later = make_event(20)

    stream = OpenStream(gateway.address)
    stream.send(licensed_metadata(license_key))
    stream.send(events_request_bytes(raw_events))
    first = stream.receive()
    stream.send(events_request([later]))  # the same stream goes on
    second = stream.receive()
    result = stream.finish()

    too_deep_id = "0190f3c2-7a41-7c3e-9d2a-5b8e4f1a2c3d"
    bad_utf8_id = bad_utf8[2:38].decode()  # field 1 comes first: tag, length 36, the ID
    assert result.code == grpc.StatusCode.OK, result.details
    # Acknowledged: the healthy ones and every bad one with a readable ID (dead-lettered); garbage has none.
    assert list(first.succeeded_events) == [e.id for e in healthy[:3]] + [too_deep_id, bad_utf8_id] + [
        e.id for e in healthy[3:]
    ]
    assert list(second.succeeded_events) == [later.id]
    assert set(pubsub.pull(gateway.subscription, [e.id for e in healthy] + [later.id])) == {
        *(e.id for e in healthy),
        later.id,
    }
    dead = {m.attributes["event.id"]: m for m in pubsub.drain(gateway.deadletter_subscription, quiet_seconds=1.0)}
    assert set(dead) >= {too_deep_id, bad_utf8_id, ""}
    assert dead[too_deep_id].attributes["reason"] == "undecodable"
    assert "nested more than 100 levels deep" in dead[too_deep_id].data["detail"]
    assert dead[bad_utf8_id].data["detail"].endswith("does not decode: a string field is not valid UTF-8")
    assert dead[""].data["detail"].endswith("does not decode: not valid protobuf (truncated or corrupt)")
    assert dead[""].data["size"] == len(garbage)
    for message in dead.values():
        # Nothing redaction never examined: no event content, only what identifies it.
        assert set(message.data) == {"metadata", "reason", "detail", "size"}
        assert b"secret" not in message.raw
    stream_lines = [r for r in gateway.process.log_records() if r.get("message") == "RecordEvents stream ended"]
    assert (stream_lines[-1]["events_published"], stream_lines[-1]["events_dead_lettered"]) == (7, 3)


def test_a_managed_service_is_told_about_an_undecodable_event(
    gateway: Gateway, pubsub: PubSub, service_token: ServiceToken
) -> None:
    good = make_event(1)
    garbage = b"\x0f\xff\x00 not an event at all"
    metadata = managed_metadata("cody-gateway")

    stream = record_events(
        gateway.address,
        [pb.RecordEventsRequest(metadata=metadata), events_request_bytes([good.SerializeToString(), garbage])],
        service_token.headers,
    )
    unary = record_event(
        gateway.address,
        pb.RecordEventRequest(metadata=metadata).SerializeToString() + b"\x12" + bytes([len(garbage)]) + garbage,
        service_token.headers,
    )

    assert stream.code == grpc.StatusCode.OK and stream.acknowledged == [good.id]
    assert unary[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert unary[1] == (
        f"event cannot be recorded: undecodable: event of {len(garbage)} bytes does not decode: "
        "not valid protobuf (truncated or corrupt)"
    )


def test_event_ids_are_published_canonical_and_acknowledged_as_sent(
    gateway: Gateway, pubsub: PubSub, license_key: str
) -> None:
    canonical = [new_event_id() for _ in range(4)]
    spellings = [
        canonical[0].upper(),
        canonical[1].replace("-", ""),
        "{" + canonical[2] + "}",
        "urn:uuid:" + canonical[3].upper(),
    ]
    events = [make_event(n, id=spelling) for n, spelling in enumerate(spellings)]
    invalid = make_event(9, id=new_event_id().upper(), feature="Not Valid")

    result = record_events(gateway.address, [licensed_metadata(license_key), events_request([*events, invalid])])

    assert result.code == grpc.StatusCode.OK, result.details
    assert result.acknowledged == [*spellings, invalid.id]  # the exporter matches its own IDs
    received = pubsub.pull(gateway.subscription, canonical)
    for event_id, message in received.items():
        assert message.data["event"]["id"] == event_id == message.attributes["event.id"]
    dead = pubsub.pull(gateway.deadletter_subscription, [invalid.id.lower()])[invalid.id.lower()]
    assert dead.data["event"]["id"] == invalid.id.lower()
