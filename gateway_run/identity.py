"""Who is sending: the stream's metadata checked against the configured trust, as a `Caller`.

Cloud Run IAM is the outer guard (only listed invokers reach the container at all); this is the
inner one, deciding per identifier kind:

- licensed instance: a genuine, unexpired license key (Ed25519, see licensing.py), bound to the
  instance when the key names one;
- unlicensed instance: only when TELEMETRY_GATEWAY_ALLOW_UNLICENSED is true, with an instance_id;
- managed service: a bearer token in the `authorization` request header whose SHA-256 is
  configured, bound to the one `service_id` it may send as. On Cloud Run the caller then sends
  its Google ID token in `x-serverless-authorization`, which Cloud Run checks instead of
  `authorization`. A service ID never spells an identifier kind (sources.py): it becomes the
  messages' `publisher.source`, where instance traffic carries the kind.

Status codes follow the reference gateway where it defines them (an invalid license key is
INVALID_ARGUMENT, an unknown identifier kind UNIMPLEMENTED) and gRPC's meanings elsewhere.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from gateway_run import licensing
from gateway_run.errors import RequestRejected
from gateway_run.pubsub_messages import StreamContext
from gateway_run.settings import Settings
from gateway_run.sources import LICENSED, MANAGED, UNLICENSED, service_id_problem
from telemetry_events import pb, protojson

MAX_REQUEST_ID_LENGTH = 256
# Rendered into every message the stream publishes, so kept small.
MAX_METADATA_JSON_BYTES = 8192

_BEARER = re.compile(r"^Bearer +(?P<token>[\x21-\x7e]+) *$", re.IGNORECASE)

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT


@dataclass(frozen=True)
class Caller:
    kind: str
    context: StreamContext
    log_fields: dict[str, Any] = field(default_factory=dict)  # safe to log: never the key or token


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def identify(
        self,
        metadata: pb.RecordEventsRequestMetadata,
        headers: Sequence[tuple[str, str | bytes]] | None,
        unary: bool = False,
    ) -> Caller:
        """Checks a stream's (or a RecordEvent call's) metadata; raises RequestRejected with the status."""
        if len(metadata.request_id) > MAX_REQUEST_ID_LENGTH:
            raise RequestRejected(INVALID_ARGUMENT, f"request_id is over {MAX_REQUEST_ID_LENGTH} characters")
        kind = metadata.identifier.WhichOneof("identifier") if metadata.HasField("identifier") else None
        if kind == "managed_service":
            return self._managed_service(metadata, headers)
        if unary:
            raise RequestRejected(
                grpc.StatusCode.UNIMPLEMENTED, "RecordEvent is for managed services; instances use RecordEvents"
            )
        if kind == "licensed_instance":
            return self._licensed(metadata)
        if kind == "unlicensed_instance":
            return self._unlicensed(metadata)
        raise RequestRejected(grpc.StatusCode.UNIMPLEMENTED, "identifier is missing or of an unsupported kind")

    def _licensed(self, metadata: pb.RecordEventsRequestMetadata) -> Caller:
        identifier = metadata.identifier.licensed_instance
        if not self._settings.license_public_keys:
            raise RequestRejected(
                grpc.StatusCode.FAILED_PRECONDITION,
                "this gateway has no license public key configured and cannot accept licensed instances",
            )
        if not identifier.instance_id:
            raise RequestRejected(INVALID_ARGUMENT, "instance_id is required for a licensed instance")
        try:
            claims = licensing.verify(identifier.license_key, self._settings.license_public_keys)
        except licensing.LicenseError as error:
            raise RequestRejected(INVALID_ARGUMENT, f"invalid license_key: {error}") from None
        if claims.instance_id is not None and claims.instance_id != identifier.instance_id:
            raise RequestRejected(
                grpc.StatusCode.PERMISSION_DENIED,
                f"license_key (key id {claims.key_id}) was issued for another instance "
                f"than {identifier.instance_id[:100]!r}",
            )
        fingerprint = licensing.fingerprint(identifier.license_key)
        published = pb.RecordEventsRequestMetadata()
        published.CopyFrom(metadata)
        # The key is a bearer secret: what leaves is its fingerprint, in the same field.
        published.identifier.licensed_instance.license_key = fingerprint
        return Caller(
            LICENSED,
            self._context(published, LICENSED, managed=False),
            {
                "identifier": LICENSED,
                "instance_id": identifier.instance_id[:200],
                "external_url": identifier.external_url[:200],
                "licensee": claims.licensee[:200],
                "license_key_id": claims.key_id,
                "license_key_fingerprint": fingerprint,
            },
        )

    def _unlicensed(self, metadata: pb.RecordEventsRequestMetadata) -> Caller:
        identifier = metadata.identifier.unlicensed_instance
        if not self._settings.allow_unlicensed:
            raise RequestRejected(
                grpc.StatusCode.PERMISSION_DENIED, "this gateway accepts only licensed instances and managed services"
            )
        if not identifier.instance_id:
            raise RequestRejected(INVALID_ARGUMENT, "instance_id is required for an unlicensed instance")
        return Caller(
            UNLICENSED,
            self._context(metadata, UNLICENSED, managed=False),
            {
                "identifier": UNLICENSED,
                "instance_id": identifier.instance_id[:200],
                "external_url": identifier.external_url[:200],
            },
        )

    def _managed_service(
        self, metadata: pb.RecordEventsRequestMetadata, headers: Sequence[tuple[str, str | bytes]] | None
    ) -> Caller:
        token = _bearer_token(headers)
        digest = hashlib.sha256(token.encode()).hexdigest()
        # Compared against every configured hash, in constant time each: no early exit to time.
        bound_to: list[str] = []
        for accepted in self._settings.service_tokens:
            if hmac.compare_digest(digest, accepted.sha256):
                bound_to.append(accepted.service_id)
        if not bound_to:
            raise RequestRejected(grpc.StatusCode.PERMISSION_DENIED, "the bearer token is not accepted by this gateway")
        identifier = metadata.identifier.managed_service
        service_id = identifier.service_id
        problem = service_id_problem(service_id)
        if problem:
            raise RequestRejected(INVALID_ARGUMENT, problem)
        if service_id not in bound_to:
            raise RequestRejected(
                grpc.StatusCode.PERMISSION_DENIED,
                f"the bearer token is not bound to service_id {service_id!r}: each token may send as one service only",
            )
        fields: dict[str, Any] = {"identifier": MANAGED, "service_id": service_id, "token_sha256_prefix": digest[:12]}
        if identifier.HasField("service_environment"):
            fields["service_environment"] = identifier.service_environment[:200]
        # A trusted service names itself: its ID is the publisher.source attribute.
        return Caller(MANAGED, self._context(metadata, service_id, managed=True), fields)

    def _context(self, metadata: pb.RecordEventsRequestMetadata, source: str, managed: bool) -> StreamContext:
        metadata_json = protojson.message_to_json(metadata)
        if len(metadata_json.encode()) > MAX_METADATA_JSON_BYTES:
            raise RequestRejected(
                INVALID_ARGUMENT, f"metadata is over {MAX_METADATA_JSON_BYTES} bytes as JSON; shorten its fields"
            )
        return StreamContext(source, metadata_json, managed, request_id=metadata.request_id)


def _bearer_token(headers: Sequence[tuple[str, str | bytes]] | None) -> str:
    values = [value for key, value in headers or () if key.lower() == "authorization"]
    if not values:
        raise RequestRejected(
            grpc.StatusCode.UNAUTHENTICATED, "a managed service must send authorization: Bearer <token>"
        )
    if len(values) > 1:
        raise RequestRejected(grpc.StatusCode.UNAUTHENTICATED, "more than one authorization header")
    value = values[0]
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    match = _BEARER.fullmatch(value)
    if match is None:
        raise RequestRejected(grpc.StatusCode.UNAUTHENTICATED, "the authorization header is not 'Bearer <token>'")
    return match["token"]
