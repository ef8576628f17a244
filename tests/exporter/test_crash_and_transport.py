"""A killed exporter loses nothing; TLS calls carry an ID token; messages are framed without re-encoding."""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from localdev.scripted_gateway import ScriptedGateway
from telemetry_events import pb
from telemetry_events.envvars import SettingError
from telemetry_export import gateway_client
from telemetry_export.exporter import MAX_BATCHES_IN_FLIGHT
from telemetry_export.gateway_client import GatewayTarget, open_channel, parse_gateway_addr
from telemetry_export.gateway_stream import GatewayStream, split_messages
from telemetry_export.settings import GatewayIdentity

from .conftest import export_to, queue_states, record_samples

CLI = str(Path(sys.executable).with_name("telemetry-export"))


def test_an_exporter_killed_mid_run_loses_nothing_once_its_lease_expires(conn, database_url):
    ids = record_samples(conn, 6_000, seed=31)
    slow = ScriptedGateway(delay_per_message=0.25).start()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TELEMETRY_GATEWAY_ADDR": slow.url,
        "TELEMETRY_INSTANCE_ID": "test-instance",
        "TELEMETRY_EXPORT_BATCH_SIZE": "500",
        "TELEMETRY_EXPORT_MAX_MESSAGE_BYTES": "40000",
        "TELEMETRY_EXPORT_FUNCTION_TIMEOUT": "8",
        "TELEMETRY_EXPORT_DEADLINE_MARGIN": "2",
        "TELEMETRY_EXPORT_LEASE": "1",
    }
    process = subprocess.Popen([CLI, "export"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while len(slow.received_ids()) < 1_200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, "the exporter finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        slow.stop()
    before_kill = set(slow.received_ids())
    states = queue_states(conn)
    assert states["leased"] > 0 and states["exported"] < 6_000  # rows were caught in flight

    cursor = conn.cursor()
    cursor.execute("SELECT max(leased_until) - now() FROM telemetry_events_export_queue")
    lease_left = cursor.fetchone()[0]
    conn.commit()
    time.sleep(max(lease_left.total_seconds(), 0) + 0.2)

    fresh = ScriptedGateway().start()
    try:
        report = export_to(conn, fresh.url)
    finally:
        fresh.stop()
    assert report.remaining == 0
    assert queue_states(conn) == {"exported": 6_000, "quarantined": 0, "waiting": 0, "leased": 0}
    delivered = before_kill | set(fresh.received_ids())
    assert delivered == set(ids)  # nothing lost
    duplicates = before_kill & set(fresh.received_ids())
    # Resent: only rows that were in flight (sent, not yet marked) when the process died.
    assert 0 < len(duplicates) <= MAX_BATCHES_IN_FLIGHT * 500


def test_addresses_are_parsed_into_targets():
    assert parse_gateway_addr("http://127.0.0.1:8080") == GatewayTarget("127.0.0.1:8080", False, "")
    assert parse_gateway_addr("https://gateway-abc-uc.a.run.app") == GatewayTarget(
        "gateway-abc-uc.a.run.app:443", True, "https://gateway-abc-uc.a.run.app"
    )
    for bad in ("", "gateway:443", "https://host/path", "ftp://host"):
        with pytest.raises(SettingError, match="TELEMETRY_GATEWAY_ADDR"):
            parse_gateway_addr(bad)


def _self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("gateway.test")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


class FakeIdTokenCredentials:
    """Stands in for google.oauth2 ID token credentials, which need a Google identity to mint tokens."""

    def __init__(self) -> None:
        self.refreshes = 0
        self.token = None

    def before_request(self, request, method, url, headers) -> None:
        if self.token is None:
            self.refreshes += 1
            self.token = f"id-token-{self.refreshes}"
        headers["authorization"] = f"Bearer {self.token}"


def test_tls_calls_carry_an_id_token_for_the_gateway_url(conn, monkeypatch):
    record_samples(conn, 30, seed=32)
    certificate, key = _self_signed()
    server = ScriptedGateway().start(grpc.ssl_server_credentials([(key, certificate)]))
    audiences = []
    credentials = FakeIdTokenCredentials()

    def fetch(audience):
        audiences.append(audience)
        return credentials

    monkeypatch.setattr(gateway_client, "default_id_token_credentials", fetch)
    target = GatewayTarget(f"127.0.0.1:{server.port}", True, "https://gateway.test")
    try:
        channel = open_channel(
            target, root_certificates=certificate, extra_options=[("grpc.ssl_target_name_override", "gateway.test")]
        )
        stream = GatewayStream(channel, GatewayIdentity(instance_id="i"), timeout=30)
        batch = stream.send(
            [(f"0194f3a2-7c1e-7b2a-9d3e-5f6a7b8c9d0{n}", pb.Event(id="x").SerializeToString()) for n in range(3)],
            100_000,
        )
        stream.close()
        assert stream.wait(batch, timeout=30)
        channel.close()
    finally:
        server.stop()
    assert audiences == ["https://gateway.test"]
    [metadata] = server.metadata_seen
    assert metadata["authorization"] == "Bearer id-token-1"


def test_plaintext_channels_send_no_credentials(conn):
    server = ScriptedGateway().start()
    try:
        record_samples(conn, 5, seed=33)
        export_to(conn, server.url)
    finally:
        server.stop()
    assert "authorization" not in server.metadata_seen[0]


def test_events_are_framed_into_messages_that_parse_back_exactly():
    events = []
    for n in range(300):
        event = pb.Event(id=f"id-{n}", feature="search", action="submit")
        event.parameters.metadata["n"] = n
        event.parameters.private_metadata.update({"pad": "x" * (n * 7)})
        events.append(event)
    payloads = [(e.id, e.SerializeToString()) for e in events]
    messages = split_messages(payloads, max_bytes=20_000)
    assert len(messages) > 10
    decoded = []
    for ids, raw in messages:
        assert len(raw) <= 20_000
        request = pb.RecordEventsRequest.FromString(raw)
        assert request.WhichOneof("payload") == "events"
        assert [e.id for e in request.events.events] == ids
        decoded.extend(request.events.events)
    assert decoded == events


def test_an_event_larger_than_a_message_travels_alone():
    big = pb.Event(id="big", feature="search", action="submit")
    big.parameters.private_metadata.update({"pad": "x" * 50_000})
    small = pb.Event(id="small", feature="search", action="submit")
    messages = split_messages(
        [("small", small.SerializeToString()), ("big", big.SerializeToString()), ("small2", small.SerializeToString())],
        max_bytes=10_000,
    )
    assert [ids for ids, _ in messages] == [["small"], ["big"], ["small2"]]
