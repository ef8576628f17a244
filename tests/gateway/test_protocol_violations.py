"""Every way a caller can break the protocol or fail to identify itself, each answered with its status.

After each one, the same gateway must still be healthy and accept a valid stream.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from gateway_testing import (
    INSTANCE_ID,
    Gateway,
    ServiceToken,
    dev_gateway_env,
    events_request,
    licensed_metadata,
    make_event,
    managed_metadata,
    record_event,
    record_events,
    unlicensed_metadata,
)

from localdev.gateway import DevelopmentLicense, development_license, start_gateway
from telemetry_events import pb

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT


@dataclass
class Kit:
    dev_license: DevelopmentLicense
    license_key: str
    token: ServiceToken


@dataclass
class Violation:
    requests: Callable[[Kit], list[Any]]
    code: grpc.StatusCode
    details: str
    headers: Callable[[Kit], tuple[tuple[str, str], ...]] = lambda kit: ()
    unary: bool = False


def tampered(key: str) -> str:
    """The same key with its claims changed (a longer expiry), the signature left as it was."""
    prefix, claims, signature = key.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    decoded["expires"] += 10 * 365 * 86400
    forged = base64.urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b"=").decode()
    return f"{prefix}.{forged}.{signature}"


def respelled(key: str) -> str:
    """The same key with its signature in standard base64, padded: the same bytes, another text."""
    prefix, claims, signature = key.split(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    return f"{prefix}.{claims}.{base64.b64encode(raw).decode()}"


def with_stray_bits(key: str) -> str:
    """The same key with unused low bits of the signature's last character set: the same bytes, another text."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return key[:-1] + alphabet[alphabet.index(key[-1]) | 0b1111]


def event_batch() -> pb.RecordEventsRequest:
    return events_request([make_event(1)])


def metadata_without_identifier() -> pb.RecordEventsRequest:
    return pb.RecordEventsRequest(metadata=pb.RecordEventsRequestMetadata(request_id="no-identifier"))


def managed(service_id: str = "cody-gateway") -> pb.RecordEventsRequest:
    return pb.RecordEventsRequest(metadata=managed_metadata(service_id))


def bearer(kit: Kit) -> tuple[tuple[str, str], ...]:
    return kit.token.headers


VIOLATIONS: dict[str, Violation] = {
    "events before metadata": Violation(
        lambda kit: [event_batch()], INVALID_ARGUMENT, "events received before metadata"
    ),
    "metadata twice": Violation(
        lambda kit: [licensed_metadata(kit.license_key), event_batch(), licensed_metadata(kit.license_key)],
        INVALID_ARGUMENT,
        "metadata received more than once",
    ),
    "bytes that are not a request": Violation(
        lambda kit: [b"\xff\xff\xff\xff not protobuf"], INVALID_ARGUMENT, "not a valid RecordEventsRequest"
    ),
    "request with neither metadata nor events": Violation(
        lambda kit: [licensed_metadata(kit.license_key), pb.RecordEventsRequest()], INVALID_ARGUMENT, "neither"
    ),
    "metadata without identifier": Violation(
        lambda kit: [metadata_without_identifier()], grpc.StatusCode.UNIMPLEMENTED, "identifier"
    ),
    "request_id too long": Violation(
        lambda kit: [licensed_metadata(kit.license_key, request_id="r" * 1000)], INVALID_ARGUMENT, "request_id"
    ),
    "licensed without license key": Violation(
        lambda kit: [licensed_metadata("")], INVALID_ARGUMENT, "license_key is required"
    ),
    "license key that is not one": Violation(
        lambda kit: [licensed_metadata("sk-0123456789abcdef")], INVALID_ARGUMENT, "not a license key"
    ),
    "license key with altered claims": Violation(
        lambda kit: [licensed_metadata(tampered(kit.license_key))], INVALID_ARGUMENT, "signature does not verify"
    ),
    "license key signed by another issuer": Violation(
        lambda kit: [licensed_metadata(development_license().issue(instance_id=INSTANCE_ID))],
        INVALID_ARGUMENT,
        "signature does not verify",
    ),
    "license key with its signature respelled in standard base64": Violation(
        lambda kit: [licensed_metadata(respelled(kit.license_key))], INVALID_ARGUMENT, "not base64url without padding"
    ),
    "license key with stray bits in its last character": Violation(
        lambda kit: [licensed_metadata(with_stray_bits(kit.license_key))], INVALID_ARGUMENT, "not canonical base64url"
    ),
    "expired license key": Violation(
        lambda kit: [licensed_metadata(kit.dev_license.issue(instance_id=INSTANCE_ID, days=-1))],
        INVALID_ARGUMENT,
        "expired",
    ),
    "license key of another instance": Violation(
        lambda kit: [licensed_metadata(kit.license_key, instance_id="someone-else")],
        grpc.StatusCode.PERMISSION_DENIED,
        "another instance",
    ),
    "licensed without instance_id": Violation(
        lambda kit: [licensed_metadata(kit.license_key, instance_id="")], INVALID_ARGUMENT, "instance_id is required"
    ),
    "unlicensed without instance_id": Violation(
        lambda kit: [unlicensed_metadata(instance_id="")], INVALID_ARGUMENT, "instance_id is required"
    ),
    "metadata too large to publish": Violation(
        lambda kit: [unlicensed_metadata(instance_id="i" * 10_000)], INVALID_ARGUMENT, "metadata is over"
    ),
    "managed service without token": Violation(
        lambda kit: [managed()], grpc.StatusCode.UNAUTHENTICATED, "Bearer <token>"
    ),
    "managed service with a malformed authorization header": Violation(
        lambda kit: [managed()],
        grpc.StatusCode.UNAUTHENTICATED,
        "not 'Bearer <token>'",
        headers=lambda kit: (("authorization", f"Basic {kit.token.token}"),),
    ),
    "managed service with an unknown token": Violation(
        lambda kit: [managed()],
        grpc.StatusCode.PERMISSION_DENIED,
        "not accepted",
        headers=lambda kit: (("authorization", "Bearer not-a-configured-token"),),
    ),
    "managed service without service_id": Violation(
        lambda kit: [managed(service_id="")], INVALID_ARGUMENT, "service_id is required", headers=bearer
    ),
    "managed service with an unusable service_id": Violation(
        lambda kit: [managed(service_id="bad id\n" * 50)], INVALID_ARGUMENT, "service_id must be", headers=bearer
    ),
    "managed service labelling itself as instance traffic": Violation(
        lambda kit: [managed(service_id="licensed_instance")], INVALID_ARGUMENT, "identifier kind", headers=bearer
    ),
    "managed service labelling itself as an identifier kind in other letters": Violation(
        lambda kit: [managed(service_id="Unlicensed_Instance")], INVALID_ARGUMENT, "identifier kind", headers=bearer
    ),
    "managed service naming another service than its token's": Violation(
        lambda kit: [managed(service_id="another-service")],
        grpc.StatusCode.PERMISSION_DENIED,
        "not bound to service_id 'another-service'",
        headers=bearer,
    ),
    "message over the receive limit": Violation(
        lambda kit: [licensed_metadata(kit.license_key), events_request([make_event(1, feature="x" * (5 << 20))])],
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "",
    ),
    "RecordEvent from an instance": Violation(
        lambda kit: [pb.RecordEventRequest(metadata=licensed_metadata(kit.license_key).metadata, event=make_event())],
        grpc.StatusCode.UNIMPLEMENTED,
        "managed services",
        unary=True,
    ),
    "RecordEvent with bytes that are not a request": Violation(
        lambda kit: [b"\x0a\x05abc"], INVALID_ARGUMENT, "not a valid RecordEventRequest", unary=True
    ),
    "RecordEvent without an event": Violation(
        lambda kit: [pb.RecordEventRequest(metadata=managed_metadata())],
        INVALID_ARGUMENT,
        "event is required",
        headers=bearer,
        unary=True,
    ),
    "RecordEvent naming another service than its token's": Violation(
        lambda kit: [pb.RecordEventRequest(metadata=managed_metadata("another-service"), event=make_event())],
        grpc.StatusCode.PERMISSION_DENIED,
        "not bound to service_id",
        headers=bearer,
        unary=True,
    ),
    "RecordEvent without token": Violation(
        lambda kit: [pb.RecordEventRequest(metadata=managed_metadata(), event=make_event())],
        grpc.StatusCode.UNAUTHENTICATED,
        "Bearer <token>",
        unary=True,
    ),
}


def assert_still_serving(gateway: Gateway, license_key: str) -> None:
    event = make_event(99)
    result = record_events(gateway.address, [licensed_metadata(license_key), events_request([event])])
    assert (result.code, result.acknowledged) == (grpc.StatusCode.OK, [event.id]), result.details
    assert gateway.process.health() == "SERVING"
    assert gateway.process.process.poll() is None


@pytest.mark.parametrize("name", list(VIOLATIONS))
def test_violation_is_answered_with_its_status_and_the_gateway_keeps_serving(
    name: str, gateway: Gateway, dev_license: DevelopmentLicense, license_key: str, service_token: ServiceToken
) -> None:
    violation = VIOLATIONS[name]
    kit = Kit(dev_license, license_key, service_token)
    requests, headers = violation.requests(kit), violation.headers(kit)

    if violation.unary:
        code, details = record_event(gateway.address, requests[0], headers)
    else:
        result = record_events(gateway.address, requests, headers)
        code, details = result.code, result.details

    assert code == violation.code, details
    assert violation.details in details
    for secret in (license_key, service_token.token):
        assert secret not in details
    assert_still_serving(gateway, license_key)


def test_batches_accepted_before_a_violation_are_still_answered(gateway: Gateway, license_key: str) -> None:
    first, second = [make_event(n) for n in range(5)], [make_event(n) for n in range(5, 9)]

    result = record_events(
        gateway.address,
        [licensed_metadata(license_key), events_request(first), events_request(second), pb.RecordEventsRequest()],
    )

    assert result.code == INVALID_ARGUMENT
    assert [list(r.succeeded_events) for r in result.responses] == [[e.id for e in first], [e.id for e in second]]


def test_a_gateway_without_public_key_or_unlicensed_permission_refuses_both(
    dev_license: DevelopmentLicense, service_token: ServiceToken, license_key: str
) -> None:
    env = dev_gateway_env(
        dev_license,
        service_token,
        TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY="",
        TELEMETRY_GATEWAY_ALLOW_UNLICENSED="false",
    )
    with start_gateway(env) as process:
        licensed = record_events(process.address, [licensed_metadata(license_key), event_batch()])
        unlicensed = record_events(process.address, [unlicensed_metadata(), event_batch()])
        managed_ok = record_events(process.address, [managed(), event_batch()], service_token.headers)

    assert licensed.code == grpc.StatusCode.FAILED_PRECONDITION and "no license public key" in licensed.details
    assert unlicensed.code == grpc.StatusCode.PERMISSION_DENIED and "only licensed" in unlicensed.details
    assert managed_ok.code == grpc.StatusCode.OK and len(managed_ok.acknowledged) == 1
