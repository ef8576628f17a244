"""License keys: minted by operators, verified by the gateway with an Ed25519 public key.

A key reads `tgk1.<claims>.<signature>`: `claims` is base64url (no padding) of a compact JSON
object, `signature` is base64url of the Ed25519 signature over the ASCII text `tgk1.<claims>`.
Signing the encoded text rather than re-serialised JSON means the verifier checks exactly
the bytes it decodes, so no two JSON spellings of one claim set can both verify. Both parts
are accepted only in their canonical spelling (the URL-safe alphabet, no padding, no stray
bits in the last character), so one key has exactly one text and one fingerprint.

Claims: `licensee` (who the key was issued to), `instance` (optional: the only instance ID
the key is valid for), `issued` and `expires` (Unix seconds), `id` (random, to name a key in
logs or a future revocation list without revealing it).

The key is a bearer secret: anyone holding it can send events as the licensee. It is never
logged or published; `fingerprint()` is what appears instead. This module imports nothing
but the standard library and `cryptography`, so the command line can use it cheaply.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_PREFIX = "tgk1"
# Far above any real key (~250 characters): longer input is refused before any decoding.
MAX_KEY_LENGTH = 4096
# Clocks of the minting machine and the gateway may disagree a little.
CLOCK_SKEW_SECONDS = 300

_BASE64URL = re.compile(r"^[A-Za-z0-9_-]*$")


class LicenseError(ValueError):
    """A license key cannot be accepted; the message says why without repeating the key."""


@dataclass(frozen=True)
class LicenseClaims:
    licensee: str
    instance_id: str | None
    issued_at: int
    expires_at: int
    key_id: str

    def to_json(self) -> dict[str, object]:
        claims: dict[str, object] = {
            "licensee": self.licensee,
            "issued": self.issued_at,
            "expires": self.expires_at,
            "id": self.key_id,
        }
        if self.instance_id is not None:
            claims["instance"] = self.instance_id
        return claims


def generate_keypair() -> tuple[str, str]:
    """A new signing key pair as (private key, public key), each standard base64 of the raw 32 bytes."""
    private = Ed25519PrivateKey.generate()
    private_raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    private_b64 = base64.b64encode(private_raw).decode()
    return private_b64, public_key_of(private_b64)


def public_key_of(private_key_b64: str) -> str:
    """The base64 public key belonging to a base64 private key."""
    public = _private_key(private_key_b64).public_key()
    return base64.b64encode(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def decode_public_key(public_key_b64: str) -> bytes:
    """The raw 32 bytes of a base64 (standard or URL-safe) public key; raises LicenseError."""
    raw = decode_configured_key(public_key_b64, "public key")
    if len(raw) != 32:
        raise LicenseError(f"the public key decodes to {len(raw)} bytes, an Ed25519 public key has 32")
    return raw


def issue(
    private_key_b64: str,
    licensee: str,
    expires_at: int,
    instance_id: str | None = None,
    issued_at: int | None = None,
) -> str:
    """Mints a license key for `licensee`, valid until `expires_at` (Unix seconds)."""
    if not licensee.strip():
        raise LicenseError("the licensee must not be empty")
    issued = int(time.time()) if issued_at is None else int(issued_at)
    if expires_at <= issued:
        raise LicenseError("the key would expire before it was issued")
    claims = LicenseClaims(licensee.strip(), instance_id or None, issued, int(expires_at), os.urandom(8).hex())
    payload = _b64encode(json.dumps(claims.to_json(), separators=(",", ":"), sort_keys=True).encode())
    signed = f"{KEY_PREFIX}.{payload}"
    signature = _private_key(private_key_b64).sign(signed.encode("ascii"))
    return f"{signed}.{_b64encode(signature)}"


def verify(key: str, public_keys: Sequence[bytes], now: float | None = None) -> LicenseClaims:
    """Returns the claims of a genuine, unexpired key; raises LicenseError otherwise.

    Args:
        key: the license key as the instance sent it.
        public_keys: raw Ed25519 public keys; a key signed by any of them is genuine.
        now: Unix time to judge expiry by (tests); the current time when None.
    """
    if not key:
        raise LicenseError("license_key is required for a licensed instance")
    if len(key) > MAX_KEY_LENGTH:
        raise LicenseError(f"license_key is {len(key)} characters long, at most {MAX_KEY_LENGTH} allowed")
    parts = key.split(".")
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        raise LicenseError(f"license_key is not a license key (expected {KEY_PREFIX}.<claims>.<signature>)")
    try:
        signed = f"{parts[0]}.{parts[1]}".encode("ascii")
    except UnicodeEncodeError:
        raise LicenseError("license_key contains characters that no license key has") from None
    signature = _canonical_b64decode(parts[2], "license_key signature")
    if not public_keys:
        raise LicenseError("no license public key is configured")
    if not any(_signed_by(raw, signature, signed) for raw in public_keys):
        raise LicenseError(
            "license_key signature does not verify: the key was forged, altered or signed by another issuer"
        )
    claims = _parse_claims(_canonical_b64decode(parts[1], "license_key claims"))
    current = time.time() if now is None else now
    if claims.expires_at <= current:
        raise LicenseError(f"license_key expired at {iso_utc(claims.expires_at)} (key id {claims.key_id})")
    if claims.issued_at > current + CLOCK_SKEW_SECONDS:
        raise LicenseError(f"license_key is not valid before {iso_utc(claims.issued_at)} (key id {claims.key_id})")
    return claims


def fingerprint(key: str) -> str:
    """A stable, non-reversible name for a key: what logs and published metadata carry instead of it.

    Only canonically spelled keys verify, so a key that verified has this one fingerprint.
    """
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _signed_by(public_raw: bytes, signature: bytes, signed: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, signed)
    except (InvalidSignature, ValueError):
        return False
    return True


def _parse_claims(raw: bytes) -> LicenseClaims:
    try:
        claims = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise LicenseError("license_key claims are not JSON") from None
    if not isinstance(claims, dict):
        raise LicenseError("license_key claims are not a JSON object")
    licensee, instance, issued, expires, key_id = (
        claims.get(name) for name in ("licensee", "instance", "issued", "expires", "id")
    )
    if not isinstance(licensee, str) or not licensee:
        raise LicenseError("license_key claims lack a licensee")
    if instance is not None and not isinstance(instance, str):
        raise LicenseError("license_key claims have a non-text instance")
    return LicenseClaims(
        licensee,
        instance or None,
        _whole_seconds(issued, "issued"),
        _whole_seconds(expires, "expires"),
        key_id if isinstance(key_id, str) else "",
    )


def _whole_seconds(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise LicenseError(f"license_key claims lack a whole-number {name} time")
    return value


def _private_key(private_key_b64: str) -> Ed25519PrivateKey:
    raw = decode_configured_key(private_key_b64, "private key")
    if len(raw) != 32:
        raise LicenseError(f"the private key decodes to {len(raw)} bytes, an Ed25519 private key has 32")
    return Ed25519PrivateKey.from_private_bytes(raw)


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_configured_key(text: str, what: str) -> bytes:
    """The bytes of a signing or public key as an operator pastes it: base64 in either alphabet, padding optional.

    (Lenient on purpose: these keys are configuration, compared as bytes, never fingerprinted.)
    """
    normalized = text.strip().replace("-", "+").replace("_", "/").rstrip("=")
    try:
        return base64.b64decode(normalized + "=" * (-len(normalized) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise LicenseError(f"the {what} is not base64") from None


def _canonical_b64decode(text: str, what: str) -> bytes:
    """The bytes of one part of a license key, which must be spelled exactly as `_b64encode` writes it."""
    if not _BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        raise LicenseError(f"{what} is not base64url without padding")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64encode(raw) != text:
        raise LicenseError(f"{what} is not canonical base64url (its last character carries stray bits)")
    return raw


def iso_utc(seconds: int) -> str:
    """Unix seconds as ISO 8601 in UTC (2026-12-31T00:00:00Z); out of the calendar's range, the number."""
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
    except (OverflowError, OSError, ValueError):
        return f"{seconds} (Unix seconds)"
