"""The exporter's identity settings checked before connecting: a one-line error naming the variable.

The gateway has the last word (it verifies the license key's signature); this only catches,
without the network, what the gateway would refuse for sure: no instance ID, a value that is
not a license key at all, a key that has expired or names another instance. The key's claims
are read, never trusted: nothing here verifies a signature.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from datetime import UTC, datetime

from telemetry_events.envvars import SettingError
from telemetry_export.settings import GatewayIdentity

_KEY_PREFIX = "tgk1"


def check_identity(identity: GatewayIdentity, now: float | None = None) -> None:
    """Raises SettingError when the gateway would refuse `identity` whatever it is sent."""
    if not identity.instance_id:
        raise SettingError(
            "TELEMETRY_INSTANCE_ID is not set: the gateway refuses an instance without an ID (set it to this "
            "instance's ID, the one its license key was issued for)"
        )
    if not identity.license_key:
        return  # an unlicensed instance: whether it is welcome is the gateway's decision
    claims = _claims(identity.license_key)
    expires = claims.get("expires")
    if isinstance(expires, int) and expires < (time.time() if now is None else now):
        when = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M UTC")
        raise SettingError(f"TELEMETRY_LICENSE_KEY expired on {when}: ask for a new key")
    bound = claims.get("instance")
    if isinstance(bound, str) and bound != identity.instance_id:
        raise SettingError(
            f"TELEMETRY_LICENSE_KEY was issued for instance {bound[:100]!r}, "
            f"not TELEMETRY_INSTANCE_ID={identity.instance_id[:100]!r}"
        )


def _claims(key: str) -> dict[str, object]:
    parts = key.split(".")
    if len(parts) != 3 or parts[0] != _KEY_PREFIX or not parts[1] or not parts[2]:
        raise SettingError(f"TELEMETRY_LICENSE_KEY is not a license key (expected {_KEY_PREFIX}.<claims>.<signature>)")
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        raise SettingError("TELEMETRY_LICENSE_KEY is not a license key: its claims cannot be read") from None
    if not isinstance(claims, dict):
        raise SettingError("TELEMETRY_LICENSE_KEY is not a license key: its claims cannot be read")
    return claims
