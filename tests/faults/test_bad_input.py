"""Bad input, from every side: refused with a reason, and never at the cost of health or of the queue's flow.

- The three functions, under the real functions-framework: bodies that are not usable JSON,
  methods other than POST, bodies over the limit (declared or chunked) get a 4xx with a
  reason, and none of them runs the job. (tests/exporter/test_export_function.py has the
  export function's option checks; tests/jobs the others'.)
- The gateway, a real process: bytes that are not HTTP/2 or not gRPC, hundreds of tiny and
  abandoned streams, random request bytes over the wire. tests/gateway/test_protocol_violations.py
  has the 25 protocol and identity violations (oversized messages among them), and
  tests/gateway/test_decoding.py fuzzes the decoder in-process.
- The queue: corrupt payloads, payloads of newer and older writers, events too big for
  Pub/Sub or for the gateway, all in front of healthy rows.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localdev.functions import FunctionProcess, start_function
from localdev.gateway import GatewayProcess, start_gateway
from localdev.ports import free_port
from telemetry_events import pb
from telemetry_events.export_mode import ExportScope
from telemetry_events.ids import new_event_id
from telemetry_events.redaction import policy_from
from telemetry_export.exporter import ExportReport, run_export
from telemetry_export.gateway_client import open_channel, parse_gateway_addr
from telemetry_export.recording import record_events
from telemetry_export.sample_events import sample_events
from telemetry_export.settings import ExporterSettings, GatewayIdentity

from .conftest import MakePipeline, gateway_settings
from .harness import INSTANCE_ID, Collector, PubSubAdmin, QueueDb, wait_for

RECORD_EVENTS = "/telemetrygateway.v1.TelemeteryGatewayService/RecordEvents"
SNAPSHOT = Path(__file__).resolve().parents[1] / "snapshots" / "event-2026-11-25.binpb"

# --- The functions -------------------------------------------------------------------------------------------------

FUNCTIONS = ("export_events", "cleanup_exported_events", "report_queue_metrics")
RUN_FINISHED = {"export_events": "export", "cleanup_exported_events": "cleanup", "report_queue_metrics": "metrics"}


@dataclass(frozen=True)
class BadRequest:
    method: str
    body: bytes
    status: int
    reason: str  # the start of the "error" the answer must carry
    chunked: bool = False


BAD_REQUESTS = {
    "malformed JSON": BadRequest("POST", b'{"max_batches": ', 400, "body is not JSON: Expecting value"),
    "not UTF-8": BadRequest("POST", b"\xff\xfe{\x00}", 400, "body is not JSON"),
    "nested deeper than the decoder goes": BadRequest(
        "POST", b"[" * 30_000 + b"]" * 30_000, 400, "body is not JSON: maximum recursion depth"
    ),
    "an integer too long to convert": BadRequest(
        "POST", b'{"max_batches": ' + b"9" * 5_000 + b"}", 400, "body is not JSON: Exceeds the limit"
    ),
    "a JSON list": BadRequest("POST", b"[1, 2]", 400, "body must be a JSON object, got list"),
    "a JSON string": BadRequest("POST", b'"run"', 400, "body must be a JSON object, got str"),
    "JSON null": BadRequest("POST", b"null", 400, "body must be a JSON object, got NoneType"),
    "an option no function has": BadRequest("POST", b'{"retention": "1s"}', 400, "unknown option(s) retention"),
    "a declared body over 64 KiB": BadRequest(
        "POST", b'{"pad": "' + b"x" * 70_000 + b'"}', 413, "body of 70011 bytes is over the 65536 byte limit"
    ),
    "a chunked body over 64 KiB": BadRequest(
        "POST", b"x" * 200_000, 413, "body is over the 65536 byte limit", chunked=True
    ),
    "GET": BadRequest("GET", b"", 405, "method GET not allowed; use POST"),
    "PUT": BadRequest("PUT", b"{}", 405, "method PUT not allowed; use POST"),
    "DELETE": BadRequest("DELETE", b"", 405, "method DELETE not allowed; use POST"),
    "PATCH": BadRequest("PATCH", b"{}", 405, "method PATCH not allowed; use POST"),
}


def send(function: FunctionProcess, request: BadRequest) -> tuple[int, dict[str, str], dict]:
    """One raw HTTP request (chunked when asked): (status, headers, decoded JSON body)."""
    connection = http.client.HTTPConnection("127.0.0.1", function.port, timeout=30)
    try:
        headers = {"Content-Type": "application/json", "User-Agent": "Google-Cloud-Scheduler"}
        if request.chunked:
            pieces = [request.body[i : i + 8192] for i in range(0, len(request.body), 8192)]
            connection.request(request.method, "/", body=iter(pieces), headers=headers, encode_chunked=True)
        else:
            connection.request(request.method, "/", body=request.body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        try:
            body = json.loads(payload)
        except ValueError:
            body = {"error": f"(not JSON) {payload[:200]!r}"}
        return response.status, dict(response.getheaders()), body
    finally:
        connection.close()


@pytest.fixture(scope="module")
def function_database(postgres_server) -> Iterator[str]:
    name = postgres_server.create_database("faults_bad_function_input")
    url = postgres_server.url_for(name)
    QueueDb(url).migrate()
    try:
        yield url
    finally:
        postgres_server.drop_database(name)


@pytest.mark.parametrize("target", FUNCTIONS)
def test_functions_refuse_bad_requests_with_a_reason_and_run_nothing(target: str, function_database: str) -> None:
    db = QueueDb(function_database)
    # A row cleanup would delete, were it to run: it must survive every refused request.
    db.query("TRUNCATE telemetry_events_export_queue")
    db.query(
        "INSERT INTO telemetry_events_export_queue (id, timestamp, payload_pb, exported_at)"
        " VALUES (gen_random_uuid(), now() - interval '3 days', '\\x00', now() - interval '2 days')"
    )
    env = {
        "DATABASE_URL": function_database,
        "TELEMETRY_GATEWAY_ADDR": "http://127.0.0.1:9",
        "TELEMETRY_INSTANCE_ID": "bad-input-instance",  # checked before any export, even of an empty queue
        "LOG_LEVEL": "info",
    }
    with start_function(target, env) as function:
        for name, request in BAD_REQUESTS.items():
            status, headers, body = send(function, request)
            assert (status, body["error"][: len(request.reason)]) == (request.status, request.reason), (name, body)
            if status == 405:
                assert headers["Allow"] == "POST"
        log = function.log_path.read_text()
        assert f'"{RUN_FINISHED[target]} run finished"' not in log  # no bad request reached the job
        assert "Traceback" not in log
        status, _, summary = send(function, BadRequest("POST", b"", 200, ""))
        assert status == 200, summary  # and the function still works
    try:
        cleaned = db.states()["exported"] == 0
    finally:
        db.close()
    # Only the final, valid request may have run the job: cleanup then removed its row, the others left it.
    assert cleaned == (target == "cleanup_exported_events")


# --- The gateway ---------------------------------------------------------------------------------------------------


@dataclass
class GatewayUnderAbuse:
    process: GatewayProcess
    collector: Collector
    license_key: str


@pytest.fixture(scope="module")
def abused_gateway(pubsub_emulator, dev_license, license_key) -> Iterator[GatewayUnderAbuse]:
    admin = PubSubAdmin(pubsub_emulator.host_port)
    topic, subscription = admin.create(f"abuse-{uuid.uuid4().hex[:10]}")
    env = gateway_settings(dev_license, topic, pubsub_emulator.host_port, LOG_LEVEL="info")
    with start_gateway(env) as process:
        yield GatewayUnderAbuse(process, Collector(admin, subscription), license_key)


def metadata_request(license_key: str) -> bytes:
    request = pb.RecordEventsRequest()
    request.metadata.request_id = f"abuse-{uuid.uuid4().hex[:8]}"
    licensed = request.metadata.identifier.licensed_instance
    licensed.license_key, licensed.instance_id, licensed.external_url = license_key, INSTANCE_ID, "https://x.example"
    return request.SerializeToString()


def events_request(events: list[pb.Event]) -> bytes:
    return pb.RecordEventsRequest(events=pb.RecordEventsRequest.EventsPayload(events=events)).SerializeToString()


def one_stream(channel: grpc.Channel, requests: list[bytes], timeout: float = 30) -> tuple[grpc.StatusCode, list[str]]:
    call = channel.stream_stream(RECORD_EVENTS, request_serializer=None, response_deserializer=None)
    acknowledged: list[str] = []
    try:
        for raw in call(iter(requests), timeout=timeout):
            acknowledged.extend(pb.RecordEventsResponse.FromString(raw).succeeded_events)
    except grpc.RpcError as error:
        return error.code(), acknowledged
    return grpc.StatusCode.OK, acknowledged


def assert_healthy(gateway: GatewayUnderAbuse) -> None:
    """Alive, SERVING, and a valid stream is acknowledged and published."""
    assert gateway.process.process.poll() is None, gateway.process.log_tail()
    assert gateway.process.health() == "SERVING"
    event = next(sample_events(1, seed=random.randrange(1 << 30)))
    with grpc.insecure_channel(gateway.process.address) as channel:
        code, acknowledged = one_stream(channel, [metadata_request(gateway.license_key), events_request([event])])
    assert (code, acknowledged) == (grpc.StatusCode.OK, [event.id])
    gateway.collector.collect({event.id}, quiet=0.2)
    assert event.id in gateway.collector.event_ids()


def resident_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def gateway_resident_kib(pid: int) -> int:
    """The gateway process and its children: the worker processes that prepare the batches count too."""
    children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    return resident_kib(pid) + sum(resident_kib(child) for child in children)


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_NOISE = random.Random(8).randbytes(65_536)
GARBAGE = {
    "random bytes": _NOISE,
    "an HTTP/1.1 request": b"GET /telemetrygateway.v1.TelemeteryGatewayService/RecordEvents HTTP/1.1\r\n\r\n",
    "a TLS ClientHello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + _NOISE[:500],
    "the HTTP/2 preface, then noise": PREFACE + _NOISE[:4096],
    "a HEADERS frame of undecodable HPACK": PREFACE
    + _h2_frame(4, 0, 0, b"")
    + _h2_frame(1, 0x5, 1, b"\xff\xff\xff\xff\xff\xff\xff\x7f" + _NOISE[:100]),
    "a DATA frame on a stream never opened": PREFACE + _h2_frame(4, 0, 0, b"") + _h2_frame(0, 1, 7, b"\x00" * 64),
    "half a preface, then silence": PREFACE[:10],
    "nothing at all": b"",
}


def throw(address: str, payload: bytes) -> None:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        if payload:
            with contextlib.suppress(OSError):
                sock.sendall(payload)
        sock.settimeout(2)
        with contextlib.suppress(OSError):
            while sock.recv(65_536):
                pass


def test_garbage_on_the_port_leaves_the_gateway_healthy(abused_gateway: GatewayUnderAbuse) -> None:
    before = len(abused_gateway.process.log_records())
    with ThreadPoolExecutor(max_workers=8) as pool:
        for outcome in [
            pool.submit(throw, abused_gateway.process.address, p) for p in GARBAGE.values() for _ in range(5)
        ]:
            outcome.result(timeout=30)
    assert_healthy(abused_gateway)
    errors = [r for r in abused_gateway.process.log_records()[before:] if r.get("severity") in ("ERROR", "CRITICAL")]
    assert errors == []


def test_hundreds_of_tiny_and_abandoned_streams_leave_the_gateway_healthy(abused_gateway: GatewayUnderAbuse) -> None:
    # 100 streams of one event each (a worker publishes one batch at a time: ~60 ms each here),
    # 400 that identify themselves and end without events, 200 abandoned after their metadata.
    gateway = abused_gateway
    events = list(sample_events(100, seed=21))
    rss_before = gateway_resident_kib(gateway.process.pid)
    log_before = len(gateway.process.log_records())

    def abandoned(channel: grpc.Channel) -> None:
        hold = threading.Event()

        def requests() -> Iterator[bytes]:
            yield metadata_request(gateway.license_key)
            hold.wait(10)

        call = channel.stream_stream(RECORD_EVENTS, request_serializer=None, response_deserializer=None)(
            requests(), timeout=30
        )
        time.sleep(0.05)
        call.cancel()
        hold.set()

    with grpc.insecure_channel(gateway.process.address) as channel, ThreadPoolExecutor(max_workers=16) as pool:
        tiny = [
            pool.submit(one_stream, channel, [metadata_request(gateway.license_key), events_request([event])])
            for event in events
        ]
        tiny += [pool.submit(one_stream, channel, [metadata_request(gateway.license_key)]) for _ in range(400)]
        dropped = [pool.submit(abandoned, channel) for _ in range(200)]
        results = [future.result(timeout=120) for future in tiny]
        for future in dropped:
            future.result(timeout=120)

    assert [code for code, _ in results] == [grpc.StatusCode.OK] * 500
    assert sorted(i for _, acknowledged in results for i in acknowledged) == sorted(e.id for e in events)
    gateway.collector.collect({e.id for e in events}, quiet=0.5)
    assert {e.id for e in events} <= gateway.collector.event_ids()
    assert_healthy(gateway)

    def every_stream_logged() -> bool:
        lines = [
            r for r in gateway.process.log_records()[log_before:] if r.get("message") == "RecordEvents stream ended"
        ]
        return len(lines) >= 700

    wait_for(every_stream_logged, 15, "a log line for each of the 700 streams")
    growth_mib = (gateway_resident_kib(gateway.process.pid) - rss_before) / 1024
    assert growth_mib < 100, f"the gateway and its workers grew by {growth_mib:.0f} MiB over 700 streams"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=2048), first=st.booleans())
def test_random_request_bytes_over_the_wire_are_refused_cleanly(
    abused_gateway: GatewayUnderAbuse, raw: bytes, first: bool
) -> None:
    # Random bytes as the stream's first message, or right after a valid metadata message.
    requests = [raw] if first else [metadata_request(abused_gateway.license_key), raw]
    with grpc.insecure_channel(abused_gateway.process.address) as channel:
        code, _ = one_stream(channel, requests, timeout=15)
    allowed = {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
    assert code in allowed, code
    assert abused_gateway.process.process.poll() is None


# --- The queue -----------------------------------------------------------------------------------------------------


def valid_event(**fields: object) -> pb.Event:
    event = pb.Event(**{"id": new_event_id(), "feature": "search", "action": "submit", **fields})
    event.timestamp.GetCurrentTime()
    return event


def with_unknown_fields(event: pb.Event) -> bytes:
    """`event` as a newer writer would send it: fields this version has never heard of, top level and nested."""
    parameters_extra = b"\xa0\x03\x2a"  # EventParameters field 52, varint 42
    event.parameters.version = 9
    raw = event.SerializeToString()
    raw += b"\xf8\x06\x07"  # Event field 111, varint 7
    raw += b"\x82\x07\x05later"  # Event field 112, bytes "later"
    raw += b"\x32" + bytes([len(parameters_extra)]) + parameters_extra  # more of field 6 (parameters), merged
    return raw


def test_foreign_payloads_are_quarantined_or_exported_and_never_block_the_queue(
    make_pipeline: MakePipeline, pubsub_emulator
) -> None:
    deadletter_topic, deadletter_subscription = PubSubAdmin(pubsub_emulator.host_port).create(
        f"deadletter-{uuid.uuid4().hex[:8]}"
    )
    pipeline = make_pipeline(
        gateway_extra={
            "TELEMETRY_PUBSUB_DEADLETTER_TOPIC": deadletter_topic,
            "TELEMETRY_GATEWAY_MAX_MESSAGE_BYTES": "20000",  # Pub/Sub's limit, scaled down
            "TELEMETRY_GATEWAY_MAX_RECEIVE_BYTES": "65536",  # gRPC's receive limit, scaled down
        },
        exporter_extra={"TELEMETRY_EXPORT_MAX_MESSAGE_BYTES": "32768"},
    )
    newer = valid_event()
    newer.parameters.metadata["count"] = 3
    older = valid_event()
    older.parameters.legacy_metadata["durationMs"] = 1234
    older.parameters.legacy_metadata["count"] = 9_007_199_254_740_993  # beyond a double's exact integers
    snapshot = pb.Event.FromString(SNAPSHOT.read_bytes())
    too_big_for_pubsub = valid_event()
    too_big_for_pubsub.feature_flags.flags["huge"] = "x" * 30_000
    too_big_for_the_gateway = valid_event()
    too_big_for_the_gateway.feature_flags.flags["huge"] = "x" * 100_000
    truncated = valid_event(action="truncated").SerializeToString()
    bad_utf8 = valid_event()
    bad_utf8_raw = bad_utf8.SerializeToString().replace(b"search", b"se\xffrch", 1)

    quarantined_reasons = {
        new_event_id(): (random.Random(3).randbytes(200), "payload is not a telemetry Event"),
        pb.Event.FromString(truncated).id: (truncated[:-7], "payload is not a telemetry Event"),
        new_event_id(): (b"", "payload's event ID '' differs from the row's"),
        bad_utf8.id: (bad_utf8_raw, "payload is not a telemetry Event"),
        too_big_for_the_gateway.id: (
            too_big_for_the_gateway.SerializeToString(),
            "event of 100",  # ... bytes is larger than the gateway accepts (... larger than max (... vs. 65536))
        ),
    }
    exported_payloads = {
        newer.id: with_unknown_fields(newer),
        older.id: older.SerializeToString(),
        snapshot.id: snapshot.SerializeToString(),  # an older writer's bytes, kept in tests/snapshots
        too_big_for_pubsub.id: too_big_for_pubsub.SerializeToString(),
    }
    # Oldest first: every foreign row stands in front of the healthy ones.
    for row_id, payload in [*((i, p) for i, (p, _) in quarantined_reasons.items()), *exported_payloads.items()]:
        pipeline.db.query(
            "INSERT INTO telemetry_events_export_queue (id, timestamp, payload_pb)"
            " VALUES (%s, now() - interval '1 hour', %s)",
            (row_id, payload),
        )
    healthy = pipeline.db.record(600, seed=31)

    pipeline.export_until_empty(max_runs=3)
    assert pipeline.runs <= 2  # the row too big for the gateway costs one run at most

    rows = dict(
        pipeline.db.query(
            "SELECT id::text, quarantine_reason FROM telemetry_events_export_queue WHERE quarantined_at IS NOT NULL"
        )
    )
    assert set(rows) == set(quarantined_reasons)
    for row_id, (_, reason) in quarantined_reasons.items():
        assert rows[row_id].startswith(reason), rows[row_id]
    assert "larger than the gateway accepts" in rows[too_big_for_the_gateway.id]
    assert pipeline.db.states() == {
        "exported": 600 + len(exported_payloads),
        "quarantined": len(quarantined_reasons),
        "waiting": 0,
        "leased": 0,
    }
    [(attempts,)] = pipeline.db.query("SELECT max(attempts) FROM telemetry_events_export_queue")
    assert attempts <= 2  # nothing churned

    published = set(healthy) | {newer.id, older.id, snapshot.id}
    pipeline.collector.collect(published)
    bodies = {m.event_id: json.loads(m.data)["event"] for m in pipeline.collector.messages.values()}
    assert set(bodies) == published and len(pipeline.collector.messages) == len(published)
    # A newer writer's unknown fields are carried and ignored; its known fields arrive intact.
    expected_newer = json_format.MessageToDict(newer)
    assert {k: bodies[newer.id][k] for k in ("id", "feature", "action", "parameters")} == {
        k: expected_newer[k] for k in ("id", "feature", "action", "parameters")
    }
    # An older writer's int64 metadata arrives as doubles, in `metadata`.
    assert bodies[older.id]["parameters"] == {"metadata": {"durationMs": 1234.0, "count": 9007199254740992.0}}
    assert "privateMetadata" not in bodies[snapshot.id]["parameters"]  # today's policy applied to old bytes
    assert bodies[snapshot.id]["parameters"]["metadata"]["legacyCount"] == 9007199254740992.0

    # Too big for Pub/Sub: acknowledged and dead-lettered with its reason, never retried.
    dead = Collector(PubSubAdmin(pubsub_emulator.host_port), deadletter_subscription)
    dead.collect({too_big_for_pubsub.id})
    [letter] = dead.messages.values()
    assert (letter.event_id, letter.attributes["reason"]) == (too_big_for_pubsub.id, "oversized")


class RefusingGateway:
    """A gRPC server that ends the stream RESOURCE_EXHAUSTED, as gRPC does, when a message is over `limit`.

    `name_the_limit` says whether the status details carry gRPC's "(N vs. LIMIT)" wording; without
    it, the exporter cannot tell which lone event was too big and must suspect each of them.
    """

    def __init__(self, limit: int, name_the_limit: bool) -> None:
        self.limit = limit
        self.name_the_limit = name_the_limit
        self.port = free_port()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler(
            "telemetrygateway.v1.TelemeteryGatewayService",
            {"RecordEvents": grpc.stream_stream_rpc_method_handler(self._record_events)},
        )
        self._server.add_generic_rpc_handlers((handler,))
        self._server.add_insecure_port(f"127.0.0.1:{self.port}")

    def __enter__(self) -> RefusingGateway:
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop(grace=None).wait(5)

    def _record_events(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for raw in requests:
            if pb.RecordEventsRequest.FromString(raw).WhichOneof("payload") == "metadata":
                continue  # answered by nothing: only events messages get a response
            if len(raw) > self.limit:
                detail = f"larger than max ({len(raw)} vs. {self.limit})" if self.name_the_limit else "too big"
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, detail)
            request = pb.RecordEventsRequest.FromString(raw)
            yield pb.RecordEventsResponse(succeeded_events=[e.id for e in request.events.events]).SerializeToString()


def export_in_process(conn, url: str, **settings: object) -> ExportReport:
    """One exporter run in this process (the run_export the CLI and the function call)."""
    exporter = ExporterSettings(gateway_addr=url, batch_size=100, identity=GatewayIdentity(instance_id="i"), **settings)
    target = parse_gateway_addr(url)
    return run_export(conn, exporter, policy_from(), lambda: open_channel(target))


@pytest.mark.parametrize("name_the_limit", [True, False], ids=["limit named", "limit not named"])
def test_an_event_too_big_for_the_gateway_is_quarantined_and_the_rest_flows(conn, name_the_limit: bool) -> None:
    events = list(sample_events(250, seed=51))
    big = events[10]
    big.feature_flags.flags["huge"] = "x" * 60_000
    record_events(conn, events, policy_from(), ExportScope())

    with RefusingGateway(limit=40_000, name_the_limit=name_the_limit) as gateway:
        url = f"http://127.0.0.1:{gateway.port}"
        first = export_in_process(conn, url, max_message_bytes=20_000)
        second = export_in_process(conn, url, max_message_bytes=20_000)
    # Set aside with the gateway's reason, and the run goes on with a new stream: nothing waits behind it.
    assert (first.exported, first.quarantined, first.remaining, first.stopped_because) == (249, 1, 0, "backlog empty")
    assert (second.exported, second.remaining, second.stopped_because) == (0, 0, "backlog empty")
    cursor = conn.cursor()
    cursor.execute(
        "SELECT id::text, quarantine_reason FROM telemetry_events_export_queue WHERE quarantined_at IS NOT NULL"
    )
    [(row_id, reason)] = cursor.fetchall()
    conn.commit()
    assert row_id == big.id
    if name_the_limit:
        assert "larger than the gateway accepts" in reason and "vs. 40000)" in reason
    else:  # which lone event was too big is found by sending the suspects alone
        assert reason.startswith("refused by the gateway when sent alone: ") and "RESOURCE_EXHAUSTED: too big" in reason


def test_a_gateway_limit_below_the_exporters_messages_quarantines_nothing(conn) -> None:
    # A misconfiguration (every message too big), not a poison row: rows wait, attempts are not spent.
    record_events(conn, sample_events(250, seed=52), policy_from(), ExportScope())
    with RefusingGateway(limit=5_000, name_the_limit=True) as gateway:
        report = export_in_process(conn, f"http://127.0.0.1:{gateway.port}", max_message_bytes=40_000)
    assert report.gateway_unavailable and "RESOURCE_EXHAUSTED" in report.stopped_because
    assert (report.exported, report.quarantined, report.remaining) == (0, 0, 250)
    cursor = conn.cursor()
    cursor.execute(
        "SELECT max(attempts), count(*) FILTER (WHERE leased_until IS NOT NULL) FROM telemetry_events_export_queue"
    )
    assert list(cursor.fetchone()) == [0, 0]
    conn.commit()
