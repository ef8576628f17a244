"""Refusals are not outages: a refused row is found and set aside, a refused instance is reported as such.

Against real gRPC servers on real ports: the scripted gateway behaving as an older gateway
(or the reference) that refuses a whole message for one event, or refuses the instance at
metadata time, and the real gateway for its identity refusals and its receive limit.
"""

from __future__ import annotations

import pytest

from localdev.gateway import development_license, start_gateway
from telemetry_events import pb
from telemetry_export.gateway_client import open_channel, parse_gateway_addr
from telemetry_export.gateway_stream import GatewayStream, split_messages
from telemetry_export.sample_events import sample_events
from telemetry_export.settings import GatewayIdentity, Settings

from .conftest import PROJECT, export_to, queue_states, record_samples


def _rows(conn, where: str = "TRUE") -> dict[str, tuple]:
    cursor = conn.cursor()
    columns = "id::text, attempts, exported_at IS NOT NULL, quarantine_reason, last_error"
    cursor.execute(f"SELECT {columns} FROM telemetry_events_export_queue WHERE {where}")  # noqa: S608 - fixed
    rows = {row[0]: tuple(row[1:]) for row in cursor.fetchall()}
    conn.commit()
    return rows


@pytest.mark.parametrize("undecodable", [False, True], ids=["INVALID_ARGUMENT", "INTERNAL (cannot decode)"])
def test_one_row_a_gateway_refuses_whole_messages_for_is_found_and_quarantined(conn, scripted, undecodable):
    ids = record_samples(conn, 201, seed=41)
    poison = ids[137]
    # An older gateway that decodes (and refuses) a whole message for one event in it.
    gateway = scripted(
        refuse=lambda event: "event nested too deeply to decode" if event.id == poison else "",
        refuse_as_undecodable=undecodable,
    )
    reports = []
    for _ in range(2):
        reports.append(export_to(conn, gateway.url))
        if queue_states(conn)["waiting"] == 0:
            break
    assert queue_states(conn) == {"exported": 200, "quarantined": 1, "waiting": 0, "leased": 0}
    [(attempts, exported, reason, _)] = _rows(conn, "quarantined_at IS NOT NULL").values()
    assert _rows(conn, "quarantined_at IS NOT NULL").keys() == {poison}
    expected = "Exception deserializing request!" if undecodable else "event nested too deeply to decode"
    assert reason.startswith("refused by the gateway when sent alone: gateway stream failed:") and expected in reason
    assert attempts >= 1  # a refusal of the row itself gives no attempt back
    assert sum(r.quarantined for r in reports) == 1 and sum(r.exported for r in reports) == 200
    assert all(not r.gateway_unavailable for r in reports)
    assert poison not in {i for s in gateway.streams for i in s.acknowledged}
    # Every stream that carried the poison row was refused: none of it was acknowledged anywhere.
    assert len(set(gateway.received_ids()) - {poison}) == 200


def test_a_refused_instance_is_never_mistaken_for_poison_rows(conn, scripted):
    record_samples(conn, 300, seed=42)
    gateway = scripted(refuse_metadata="invalid license_key: the key expired on 2026-01-01")
    for _ in range(3):  # as the scheduler would call it again and again
        report = export_to(conn, gateway.url, max_attempts=1)
        assert report.stopped_because == (
            "the gateway refused this instance: INVALID_ARGUMENT: invalid license_key: the key expired on 2026-01-01"
        )
        assert report.instance_refused and not report.gateway_unavailable
        assert (report.failed, report.quarantined, report.exported, report.remaining) == (0, 0, 0, 300)
    assert gateway.received_ids() == []  # no event leaves before the instance is accepted
    assert queue_states(conn) == {"exported": 0, "quarantined": 0, "waiting": 300, "leased": 0}
    cursor = conn.cursor()
    cursor.execute("SELECT DISTINCT attempts, last_error FROM telemetry_events_export_queue")
    assert [list(row) for row in cursor.fetchall()] == [
        [0, "the gateway refused this instance: INVALID_ARGUMENT: invalid license_key: the key expired on 2026-01-01"]
    ]
    conn.commit()


def test_the_real_gateway_answers_the_opening_probe_and_its_identity_refusals_are_reported(conn, live_gateway):
    record_samples(conn, 50, seed=43)
    target = parse_gateway_addr(live_gateway.url)
    channel = open_channel(target)
    try:
        accepted = GatewayStream(
            channel, GatewayIdentity(live_gateway.license_key, "test-instance", "https://sg.example.com"), timeout=30
        )
        assert accepted.wait_accepted(timeout=30)  # an empty events message is answered once metadata is taken
        accepted.close()
        assert accepted.wait_finished(timeout=30) and accepted.error is None
    finally:
        channel.close()

    other_license = development_license()  # signed with a key the gateway does not trust
    refusals = {
        "a key the gateway cannot verify": GatewayIdentity(
            other_license.issue(instance_id="test-instance"), "test-instance", "https://sg.example.com"
        ),
        "a key for another instance": GatewayIdentity(live_gateway.license_key, "another-instance", ""),
        "an unlicensed instance where only licensed ones are allowed": GatewayIdentity("", "test-instance", ""),
    }
    expected = {
        "a key the gateway cannot verify": "the gateway refused this instance: INVALID_ARGUMENT: invalid license_key",
        "a key for another instance": "the gateway refused this instance: PERMISSION_DENIED: license_key",
        "an unlicensed instance where only licensed ones are allowed": (
            "the gateway refused this instance: PERMISSION_DENIED: this gateway accepts only licensed instances"
        ),
    }
    for name, identity in refusals.items():
        report = export_to(conn, live_gateway.url, identity=identity)
        assert report.stopped_because.startswith(expected[name]), (name, report.stopped_because)
        assert (report.failed, report.quarantined, report.remaining) == (0, 0, 50), name
    assert queue_states(conn) == {"exported": 0, "quarantined": 0, "waiting": 50, "leased": 0}


def _event_of(size: int, seed: int) -> pb.Event:
    [event] = sample_events(1, seed=seed)
    event.ClearField("marketing_tracking")
    event.parameters.ClearField("private_metadata")
    n = 0
    while event.ByteSize() < size:
        for _ in range(5):
            event.parameters.metadata[f"padding-key-{n:08d}"] = float(n)
            n += 1
    return event


def test_the_real_gateway_names_its_receive_limit_and_only_events_over_it_are_quarantined(conn, pubsub_emulator):
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    topic = publisher.create_topic(name=publisher.topic_path(PROJECT, "receive-limit")).name
    dev_license = development_license()
    limit = 65_536
    env = {
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "TELEMETRY_PUBSUB_TOPIC": topic,
        "TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY": dev_license.public_key,
        "PUBSUB_EMULATOR_HOST": pubsub_emulator.host_port,
        "TELEMETRY_GATEWAY_MAX_RECEIVE_BYTES": str(limit),
        "TELEMETRY_GATEWAY_WORKERS": "0",
    }
    ids = record_samples(conn, 20, seed=44)
    under, over = _event_of(limit - 2_000, seed=45), _event_of(limit + 2_000, seed=46)
    assert under.ByteSize() + 12 < limit < over.ByteSize()
    cursor = conn.cursor()
    # Oldest first: the event over the limit ends the stream, the one under it is still unanswered then.
    for minutes, event in ((60, over), (30, under)):
        assert 16_384 < event.ByteSize()  # each travels alone in its own message
        cursor.execute(
            "INSERT INTO telemetry_events_export_queue (id, timestamp, payload_pb)"
            " VALUES (%s, now() - %s * interval '1 minute', %s)",
            (event.id, minutes, event.SerializeToString()),
        )
    conn.commit()
    identity = GatewayIdentity(dev_license.issue(instance_id="test-instance"), "test-instance", "")
    with start_gateway(env) as gateway:
        reports = [export_to(conn, gateway.url, identity=identity, max_message_bytes=16_384) for _ in range(2)]
    reasons = {row_id: row[2] for row_id, row in _rows(conn, "quarantined_at IS NOT NULL").items()}
    assert list(reasons) == [over.id]
    # gRPC's own wording, with the limit the gateway was started with:
    [(_, message)] = split_messages([(over.id, over.SerializeToString())], max_bytes=16_384)
    assert f"Received message larger than max ({len(message)} vs. {limit})" in reasons[over.id]
    exported = {row_id for row_id, row in _rows(conn).items() if row[1]}
    assert exported == {*ids, under.id}
    assert sum(r.quarantined for r in reports) == 1


def test_identity_settings_are_checked_before_connecting():
    from telemetry_events.envvars import SettingError
    from telemetry_export.identity_check import check_identity

    key = development_license().issue(instance_id="instance-a")
    check_identity(GatewayIdentity(key, "instance-a", ""))
    check_identity(GatewayIdentity("", "unlicensed-instance", ""))
    with pytest.raises(SettingError, match="^TELEMETRY_INSTANCE_ID is not set"):
        check_identity(GatewayIdentity(key, "", ""))
    with pytest.raises(SettingError, match=r"^TELEMETRY_LICENSE_KEY is not a license key \(expected tgk1"):
        check_identity(GatewayIdentity("sk-123", "instance-a", ""))
    with pytest.raises(SettingError, match="^TELEMETRY_LICENSE_KEY was issued for instance 'instance-a', not"):
        check_identity(GatewayIdentity(key, "instance-b", ""))
    with pytest.raises(SettingError, match="^TELEMETRY_LICENSE_KEY expired on "):
        check_identity(GatewayIdentity(key, "instance-a", ""), now=4_000_000_000)


def test_a_function_whose_instance_is_refused_answers_as_for_invalid_settings(conn, live_gateway, database_url):
    from localdev.functions import start_function

    record_samples(conn, 10, seed=47)
    env = {
        "DATABASE_URL": database_url,
        "TELEMETRY_GATEWAY_ADDR": live_gateway.url,
        "TELEMETRY_INSTANCE_ID": "test-instance",  # unlicensed: this gateway accepts only licensed instances
    }
    with start_function("export_events", env) as function:
        status, summary = function.call()
        assert status == 500, summary
        assert summary["stopped_because"].startswith(
            "the gateway refused this instance: PERMISSION_DENIED: this gateway accepts only licensed instances"
        )
        assert summary["failed"] == 0 and summary["remaining"] == 10
    env_without_id = {key: value for key, value in env.items() if key != "TELEMETRY_INSTANCE_ID"}
    with start_function("export_events", env_without_id) as function:
        status, body = function.call()
    assert status == 500
    assert body["error"].startswith("invalid settings: TELEMETRY_INSTANCE_ID is not set")
    assert queue_states(conn)["waiting"] == 10


def test_plaintext_goes_only_to_loopback_unless_explicitly_allowed():
    from telemetry_events.envvars import SettingError
    from telemetry_export.gateway_client import GatewayTarget

    for loopback in ("http://127.0.0.1:8080", "http://127.9.9.9:80", "http://localhost:9", "http://[::1]:8080"):
        assert not parse_gateway_addr(loopback).tls
    for remote in ("http://gateway.internal:8080", "http://10.0.0.7:8080", "http://[2001:db8::1]:80"):
        with pytest.raises(SettingError) as refused:
            Settings.from_env({"TELEMETRY_GATEWAY_ADDR": remote})
        message = str(refused.value)
        assert message.startswith(f"TELEMETRY_GATEWAY_ADDR={remote!r} is plaintext to a host that is not loopback")
        assert "TELEMETRY_EXPORT_ALLOW_INSECURE=true" in message and "\n" not in message
    allowed = Settings.from_env(
        {"TELEMETRY_GATEWAY_ADDR": "http://gateway.internal:8080", "TELEMETRY_EXPORT_ALLOW_INSECURE": "true"}
    )
    assert parse_gateway_addr(allowed.exporter.gateway_addr, allow_insecure=allowed.exporter.allow_insecure) == (
        GatewayTarget("gateway.internal:8080", False, "")
    )
    assert parse_gateway_addr("https://gateway.example.com").tls
