"""Idle and half-open connections and streams are closed within their bounds (docs/gateway.md, "Limits
at the edge"), tried with raw sockets and real gRPC clients against a real gateway process.

The limits are set to a second or two here; each test checks the mechanism (the server closed the
connection, the GOAWAY it sent and why, the status a stream ended with) and leaves generous room for
a loaded machine above the bound, but none below it.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from gateway_testing import (
    OpenStream,
    ServiceToken,
    dev_gateway_env,
    events_request,
    licensed_metadata,
    make_event,
)
from held_publishing import throttled_gateway
from raw_http2 import ENHANCE_YOUR_CALM, GOAWAY, PING, PREFACE, RawConnection

from localdev.gateway import DevelopmentLicense, GatewayProcess, start_gateway
from telemetry_events.rpc import RECORD_EVENT

HANDSHAKE_TIMEOUT = 1.0
CONNECTION_IDLE_TIMEOUT = 1.0
KEEPALIVE_TIME = 1.0
KEEPALIVE_TIMEOUT = 1.0
METADATA_TIMEOUT = 1.0
STREAM_IDLE_TIMEOUT = 1.5
# Far above every bound here, far below gRPC's defaults (a 120 s handshake, connections idle forever).
WITHIN = 30.0
# Timers may fire a little early by the clock the test reads.
EARLY = 0.8


@pytest.fixture(scope="module")
def limited(dev_license: DevelopmentLicense, service_token: ServiceToken) -> Iterator[GatewayProcess]:
    env = dev_gateway_env(
        dev_license,
        service_token,
        TELEMETRY_GATEWAY_HANDSHAKE_TIMEOUT=str(HANDSHAKE_TIMEOUT),
        TELEMETRY_GATEWAY_CONNECTION_IDLE_TIMEOUT=str(CONNECTION_IDLE_TIMEOUT),
        TELEMETRY_GATEWAY_KEEPALIVE_TIME=str(KEEPALIVE_TIME),
        TELEMETRY_GATEWAY_KEEPALIVE_TIMEOUT=str(KEEPALIVE_TIMEOUT),
        TELEMETRY_GATEWAY_METADATA_TIMEOUT=str(METADATA_TIMEOUT),
        TELEMETRY_GATEWAY_STREAM_IDLE_TIMEOUT=str(STREAM_IDLE_TIMEOUT),
    )
    with start_gateway(env) as process:
        yield process


def lifetimes(opened: dict[socket.socket, float], within: float) -> list[float]:
    """Waits until the server has closed every socket (EOF or reset); returns how long each lived."""
    sockets = list(opened)
    closed: dict[socket.socket, float] = {}
    started = time.monotonic()
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        while len(closed) < len(sockets) and time.monotonic() - started < within:
            for key, _ in selector.select(timeout=0.5):
                sock = key.fileobj
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                except BlockingIOError:
                    continue
                if not data:
                    closed[sock] = time.monotonic() - opened[sock]
                    selector.unregister(sock)
    assert len(closed) == len(sockets), f"{len(sockets) - len(closed)} of {len(sockets)} still open after {within} s"
    return list(closed.values())


def test_connections_that_send_half_the_preface_are_closed_after_the_handshake_timeout(limited) -> None:
    host, port = limited.address.rsplit(":", 1)
    opened: dict[socket.socket, float] = {}
    try:
        for _ in range(300):  # as many as the report that found them still open a minute later
            sock = socket.create_connection((host, int(port)), timeout=10)
            opened[sock] = time.monotonic()
            sock.sendall(PREFACE[: len(PREFACE) // 2])

        times = lifetimes(opened, within=WITHIN)
    finally:
        for sock in opened:
            sock.close()

    assert min(times) >= HANDSHAKE_TIMEOUT * EARLY
    assert limited.health() == "SERVING"


def test_a_connection_without_calls_is_sent_away_after_the_idle_timeout(limited) -> None:
    connection = RawConnection(limited.address)
    connection.start_http2()

    frames, closed_at = connection.frames_until_closed(within=WITHIN)
    connection.close()

    (goaway,) = [f for f in frames if f.kind == GOAWAY]
    assert goaway.goaway_debug == b"connection idle"
    assert goaway.at >= CONNECTION_IDLE_TIMEOUT * EARLY and closed_at >= goaway.at


def test_a_real_client_channel_left_idle_is_disconnected_and_reconnects_on_its_next_call(limited) -> None:
    states: list[grpc.ChannelConnectivity] = []
    with grpc.insecure_channel(limited.address) as channel:
        channel.subscribe(states.append, try_to_connect=True)
        grpc.channel_ready_future(channel).result(timeout=10)
        deadline = time.monotonic() + WITHIN
        while not went_idle_after_ready(states):
            assert time.monotonic() < deadline, f"the connection was never closed: {states}"
            time.sleep(0.1)
        grpc.channel_ready_future(channel).result(timeout=10)  # and it reconnects when asked to


def went_idle_after_ready(states: list[grpc.ChannelConnectivity]) -> bool:
    seen = list(states)
    return (
        grpc.ChannelConnectivity.READY in seen
        and grpc.ChannelConnectivity.IDLE in seen[seen.index(grpc.ChannelConnectivity.READY) :]
    )


def test_a_call_whose_client_stops_answering_pings_is_closed_after_the_keepalive_timeout(limited) -> None:
    silent = RawConnection(limited.address)
    silent.answer_pings = False
    silent.start_http2()
    silent.open_call(RECORD_EVENT)  # headers only: the call waits for a message that never comes
    answering = RawConnection(limited.address)
    answering.start_http2()
    answering.open_call(RECORD_EVENT)
    kept_open = 2 * (KEEPALIVE_TIME + KEEPALIVE_TIMEOUT)
    with ThreadPoolExecutor(1) as pool:
        answered = pool.submit(answering.frames_until_closed, within=kept_open)

        frames, closed_at = silent.frames_until_closed(within=WITHIN)
        silent.close()
        with pytest.raises(AssertionError, match="still open"):  # the same call answering its pings stays
            answered.result()
    answering.close()

    pings = [f for f in frames if f.kind == PING]
    assert pings and pings[0].at >= KEEPALIVE_TIME * EARLY
    assert closed_at - pings[0].at >= KEEPALIVE_TIMEOUT * EARLY


def test_a_client_that_pings_too_often_is_sent_away(limited) -> None:
    connection = RawConnection(limited.address)
    connection.start_http2()

    frames, _ = connection.frames_until_closed(within=WITHIN, every=0.05, action=RawConnection.ping)
    connection.close()

    (goaway,) = [f for f in frames if f.kind == GOAWAY]
    assert goaway.goaway_error == ENHANCE_YOUR_CALM and goaway.goaway_debug == b"too_many_pings"


def test_a_connection_is_sent_away_at_its_maximum_age_and_closed_after_the_grace(
    dev_license: DevelopmentLicense, service_token: ServiceToken
) -> None:
    env = dev_gateway_env(
        dev_license,
        service_token,
        TELEMETRY_GATEWAY_MAX_CONNECTION_AGE="2",
        TELEMETRY_GATEWAY_MAX_CONNECTION_AGE_GRACE="1",
    )
    with start_gateway(env) as process:
        connection = RawConnection(process.address)
        connection.start_http2()
        connection.open_call(RECORD_EVENT)  # a call that never ends, pings answered: only age ends it

        frames, closed_at = connection.frames_until_closed(within=WITHIN)
        connection.close()

    goaways = [f for f in frames if f.kind == GOAWAY]
    assert goaways and goaways[0].goaway_debug.startswith(b"max_age")
    assert goaways[0].at >= 2.0 * EARLY and closed_at - goaways[0].at >= 1.0 * EARLY


def stream_line(process: GatewayProcess, request_id: str) -> dict:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [
            r
            for r in process.log_records()
            if r.get("message") == "RecordEvents stream ended" and r.get("request_id") == request_id
        ]
        if lines:
            return lines[-1]
        time.sleep(0.1)
    raise AssertionError(f"no stream line for {request_id}")


def test_a_stream_that_never_sends_metadata_is_ended(limited) -> None:
    stream = OpenStream(limited.address)  # a real client that opens the stream and sends nothing

    result = stream.finish_when_ended()

    assert result.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert result.details.startswith(f"no metadata within {METADATA_TIMEOUT:g} s of the stream's start")
    line = stream_line(limited, "")
    assert line["status"] == "DEADLINE_EXCEEDED" and "no metadata" in line["detail"]


def test_a_stream_that_goes_idle_after_its_metadata_is_ended_and_keeps_its_answers(limited, license_key: str) -> None:
    events = [make_event(n) for n in range(3)]
    stream = OpenStream(limited.address)
    stream.send(licensed_metadata(license_key, request_id="goes-idle"))
    stream.send(events_request(events))
    answered = stream.receive()

    result = stream.finish_when_ended()  # and then nothing more is sent

    assert list(answered.succeeded_events) == [e.id for e in events]
    assert result.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert result.details.startswith(f"stream idle for {STREAM_IDLE_TIMEOUT:g} s")
    line = stream_line(limited, "goes-idle")
    assert (line["status"], line["events_received"], line["events_published"]) == ("DEADLINE_EXCEEDED", 3, 3)


def test_a_stream_is_not_idle_while_the_gateway_owes_it_a_response(
    pubsub, pubsub_emulator, dev_license: DevelopmentLicense, service_token: ServiceToken, license_key: str
) -> None:
    slow, next_batch = [make_event(n) for n in range(3)], [make_event(n) for n in range(3)]
    with throttled_gateway(
        pubsub, pubsub_emulator.host_port, dev_license, service_token, TELEMETRY_GATEWAY_STREAM_IDLE_TIMEOUT="1"
    ) as gateway:
        gateway.holds.hold(slow[0].id, release_after=3.0)  # its response is owed three times the idle limit
        stream = OpenStream(gateway.process.address)
        stream.send(licensed_metadata(license_key))
        stream.send(events_request(slow))
        first = stream.receive()
        stream.send(events_request(next_batch))  # the idle clock started at that response: still open
        second = stream.receive()
        result = stream.finish()

    assert [list(first.succeeded_events), list(second.succeeded_events)] == [
        [e.id for e in slow],
        [e.id for e in next_batch],
    ]
    assert result.code == grpc.StatusCode.OK, result.details
