"""Helpers of the gateway tests: Pub/Sub topics on the emulator, events and identities, and a small
synchronous gRPC client that reports every response and the final status of a stream.

(A uniquely named module rather than conftest.py, so that test modules can import it.)"""

from __future__ import annotations

import hashlib
import json
import queue
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import json_format

from localdev.gateway import DevelopmentLicense, GatewayProcess
from localdev.pubsub_admin import PubSubAdmin
from telemetry_events import pb
from telemetry_events.ids import new_event_id

PROJECT = "gateway-tests"
SERVICE = "/telemetrygateway.v1.TelemeteryGatewayService/"
INSTANCE_ID = "instance-7f3c"
EXTERNAL_URL = "https://sourcegraph.acme.example"


# --- Pub/Sub -------------------------------------------------------------------------------------------------------


@dataclass
class Received:
    data: dict[str, Any]
    raw: bytes
    attributes: dict[str, str]


class PubSub:
    """Topics and subscriptions on the emulator, uniquely named, and pulling until IDs arrive."""

    def __init__(self) -> None:
        self._admin = PubSubAdmin()
        self.publisher = self._admin.publisher
        self.subscriber = self._admin.subscriber

    def topic(self, prefix: str) -> tuple[str, str]:
        """Creates a uniquely named topic and a subscription to it; returns (topic ID, subscription path)."""
        topic_id = f"{prefix}-{uuid.uuid4().hex[:10]}"
        return topic_id, self.create(topic_id)

    def create(self, topic_id: str) -> str:
        """Creates the topic `topic_id` and its subscription `<topic_id>-sub`; returns the subscription path."""
        return self._admin.create(PROJECT, topic_id, topic_id + "-sub")[1]

    def pull(self, subscription: str, expected_ids: Iterable[str], timeout: float = 20.0) -> dict[str, Received]:
        """Pulls (and acknowledges) until a message with each expected `event.id` has arrived."""
        wanted = set(expected_ids)
        found: dict[str, Received] = {}
        deadline = time.monotonic() + timeout
        while wanted - found.keys() and time.monotonic() < deadline:
            for message in self.pull_once(subscription):
                found[message.attributes.get("event.id", "")] = message
        missing = wanted - found.keys()
        assert not missing, f"{len(missing)} of {len(wanted)} messages never arrived, e.g. {sorted(missing)[:3]}"
        return {event_id: found[event_id] for event_id in wanted}

    def pull_once(self, subscription: str, max_messages: int = 1000, timeout: float = 5.0) -> list[Received]:
        """One pull, acknowledged. The emulator holds an empty pull open: `timeout` cuts it short."""
        return [
            Received(json.loads(m.data), m.data, dict(m.attributes))
            for m in self._admin.pull_once(subscription, max_messages, timeout)
        ]

    def drain(self, subscription: str, quiet_seconds: float = 1.0) -> list[Received]:
        """Everything that arrives until a pull waits `quiet_seconds` for nothing."""
        messages: list[Received] = []
        while batch := self.pull_once(subscription, timeout=quiet_seconds):
            messages.extend(batch)
        return messages


# --- Identities ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceToken:
    token: str
    service_id: str = "cody-gateway"  # the one service ID the gateway binds this token to

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.token.encode()).hexdigest()

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)


def licensed_metadata(license_key: str, instance_id: str = INSTANCE_ID, request_id: str = "") -> pb.RecordEventsRequest:
    return pb.RecordEventsRequest(
        metadata=pb.RecordEventsRequestMetadata(
            request_id=request_id or f"request-{uuid.uuid4().hex[:8]}",
            identifier=pb.Identifier(
                licensed_instance=pb.Identifier.LicensedInstanceIdentifier(
                    license_key=license_key, instance_id=instance_id, external_url=EXTERNAL_URL
                )
            ),
        )
    )


def unlicensed_metadata(instance_id: str = INSTANCE_ID) -> pb.RecordEventsRequest:
    return pb.RecordEventsRequest(
        metadata=pb.RecordEventsRequestMetadata(
            request_id=f"request-{uuid.uuid4().hex[:8]}",
            identifier=pb.Identifier(
                unlicensed_instance=pb.Identifier.UnlicensedInstanceIdentifier(
                    instance_id=instance_id, external_url=EXTERNAL_URL
                )
            ),
        )
    )


def managed_metadata(
    service_id: str = "cody-gateway", environment: str | None = "prod"
) -> pb.RecordEventsRequestMetadata:
    identifier = pb.Identifier.ManagedServiceIdentifier(service_id=service_id)
    if environment is not None:
        identifier.service_environment = environment
    return pb.RecordEventsRequestMetadata(
        request_id=f"request-{uuid.uuid4().hex[:8]}", identifier=pb.Identifier(managed_service=identifier)
    )


# --- Events --------------------------------------------------------------------------------------------------------


def make_event(number: int = 0, **overrides: Any) -> pb.Event:
    """A complete event with sensitive fields that redaction must remove."""
    event = pb.Event(id=new_event_id(), feature="search.results", action="viewed")
    event.timestamp.FromSeconds(1_750_000_000 + number)
    event.source.server.version = "6.1.2345"
    event.source.client.name = "VSCODE"
    event.source.client.version = "1.92.0"
    event.parameters.version = 2
    event.parameters.metadata["resultCount"] = float(number)
    event.parameters.metadata["recordsPrivateMetadataTranscript"] = 1.0
    event.parameters.legacy_metadata["durationMs"] = 1200 + number
    event.parameters.private_metadata.update({"query": "secret-query-do-not-leak", "testField": "kept?"})
    event.parameters.billing_metadata.product = "CODE_SEARCH"
    event.parameters.billing_metadata.category = "CORE"
    event.user.user_id = 42
    event.user.anonymous_user_id = "anon-1"
    event.feature_flags.flags["new-search-ui"] = "true"
    event.marketing_tracking.url = "https://example.com/?utm_source=secret-campaign"
    event.marketing_tracking.cohort_id = "cohort-secret"
    event.interaction.trace_id = "trace-1"
    event.interaction.geolocation.country_code = "DE"
    for name, value in overrides.items():
        setattr(event, name, value)
    return event


def events_request(events: Iterable[pb.Event]) -> pb.RecordEventsRequest:
    return pb.RecordEventsRequest(events=pb.RecordEventsRequest.EventsPayload(events=list(events)))


def event_dict(event: pb.Event) -> dict[str, Any]:
    return json_format.MessageToDict(event)


# --- A gRPC client that shows everything ---------------------------------------------------------------------------


@dataclass
class StreamResult:
    responses: list[pb.RecordEventsResponse] = field(default_factory=list)
    code: grpc.StatusCode = grpc.StatusCode.OK
    details: str = ""
    error: grpc.RpcError | None = None  # with the trailing metadata, for grpcio-status

    @property
    def acknowledged(self) -> list[str]:
        return [event_id for response in self.responses for event_id in response.succeeded_events]


def _serialize(item: Any) -> bytes:
    return item if isinstance(item, bytes) else item.SerializeToString()


def record_events(
    address: str,
    requests: Iterable[Any],
    headers: Iterable[tuple[str, str]] = (),
    timeout: float = 60.0,
) -> StreamResult:
    """Runs one RecordEvents stream; `requests` are messages or raw bytes. Never raises for a status."""
    result = StreamResult()
    with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        call = channel.stream_stream(SERVICE + "RecordEvents", request_serializer=None, response_deserializer=None)
        try:
            for raw in call((_serialize(item) for item in requests), metadata=tuple(headers), timeout=timeout):
                result.responses.append(pb.RecordEventsResponse.FromString(raw))
        except grpc.RpcError as error:
            result.code, result.details = error.code(), error.details() or ""
            result.error = error
    return result


def record_event(
    address: str, request: Any, headers: Iterable[tuple[str, str]] = (), timeout: float = 30.0
) -> tuple[grpc.StatusCode, str]:
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(SERVICE + "RecordEvent", request_serializer=None, response_deserializer=None)
        try:
            call(_serialize(request), metadata=tuple(headers), timeout=timeout)
        except grpc.RpcError as error:
            return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


class OpenStream:
    """A stream kept open: send one request at a time and read its response (fault tests)."""

    def __init__(self, address: str, timeout: float = 120.0) -> None:
        self._channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)])
        self._outbox: queue.Queue[bytes | None] = queue.Queue()
        call = self._channel.stream_stream(
            SERVICE + "RecordEvents", request_serializer=None, response_deserializer=None
        )
        self._responses = call(self._requests(), timeout=timeout)

    def _requests(self) -> Iterator[bytes]:
        while (item := self._outbox.get()) is not None:
            yield item

    def send(self, request: Any) -> None:
        self._outbox.put(_serialize(request))

    def receive(self) -> pb.RecordEventsResponse:
        return pb.RecordEventsResponse.FromString(next(self._responses))

    def cancel(self) -> None:
        """Cancels the call, as a client that gives up does, without reading anything more."""
        self._responses.cancel()
        self._outbox.put(None)
        self._channel.close()

    def finish_when_ended(self) -> StreamResult:
        """Sends nothing more, without closing the sending side, and reads until the server ends the stream."""
        result = self._read_to_end()
        self._outbox.put(None)
        self._channel.close()
        return result

    def finish(self) -> StreamResult:
        """Closes the sending side and reads whatever is left, with the final status."""
        self._outbox.put(None)
        result = self._read_to_end()
        self._channel.close()
        return result

    def _read_to_end(self) -> StreamResult:
        """Every response still to come, and the status the stream ended with."""
        result = StreamResult()
        try:
            for raw in self._responses:
                result.responses.append(pb.RecordEventsResponse.FromString(raw))
        except grpc.RpcError as error:
            result.code, result.details = error.code(), error.details() or ""
            result.error = error
        return result


# --- The shared gateway --------------------------------------------------------------------------------------------


@dataclass
class Gateway:
    process: GatewayProcess
    subscription: str
    deadletter_subscription: str
    topic_id: str

    @property
    def address(self) -> str:
        return self.process.address


def gateway_env(dev_license: DevelopmentLicense, service_token: ServiceToken, **extra: str) -> dict[str, str]:
    env = {
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY": dev_license.public_key,
        "TELEMETRY_GATEWAY_ALLOW_UNLICENSED": "true",
        "TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256": f"{service_token.service_id}={service_token.sha256}",
        # Small, so that an oversized event costs the test little.
        "TELEMETRY_GATEWAY_MAX_MESSAGE_BYTES": "20000",
        "TELEMETRY_GATEWAY_MAX_RECEIVE_BYTES": str(4 * 1024 * 1024),
        "TELEMETRY_GATEWAY_HEALTH_INTERVAL": "0.5",
        "TELEMETRY_GATEWAY_WORKERS": "1",
    }
    env.update(extra)
    return env


def dev_gateway_env(dev_license: DevelopmentLicense, service_token: ServiceToken, **extra: str) -> dict[str, str]:
    """gateway_env for a development-mode gateway (each message logged, not published: no Pub/Sub needed) with no
    worker processes (threads in the gateway process instead)."""
    return gateway_env(
        dev_license, service_token, TELEMETRY_GATEWAY_DEV_MODE="true", TELEMETRY_GATEWAY_WORKERS="0", **extra
    )
