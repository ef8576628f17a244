"""Channels to the Telemetry Gateway, from TELEMETRY_GATEWAY_ADDR.

`http://host:port` is plaintext HTTP/2, for local development only: refused for any host but
loopback unless TELEMETRY_EXPORT_ALLOW_INSECURE=true, since the stream carries the license key. `https://host` is TLS
with a Google-signed ID token whose audience is the gateway's URL, as Cloud Run's IAM check
expects; the token is refreshed by the credentials as it nears expiry.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from telemetry_events.envvars import SettingError

if TYPE_CHECKING:
    import grpc

# Generous limits: the exporter's own messages are bounded by TELEMETRY_EXPORT_MAX_MESSAGE_BYTES.
_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
]


@dataclass(frozen=True)
class GatewayTarget:
    host_port: str
    tls: bool
    audience: str  # the URL an ID token must name; empty for plaintext


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_gateway_addr(
    addr: str, variable: str = "TELEMETRY_GATEWAY_ADDR", allow_insecure: bool = False
) -> GatewayTarget:
    if not addr:
        raise SettingError(f"{variable} is not set: the exporter needs the gateway's address")
    parts = urlsplit(addr)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingError(f"{variable}={addr!r} must be http://host:port (local) or https://host")
    if parts.path not in ("", "/") or parts.query:
        raise SettingError(f"{variable}={addr!r} must not have a path or query")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise SettingError(f"{variable}={addr!r} has an invalid port") from None
    tls = parts.scheme == "https"
    if not tls and not allow_insecure and not is_loopback(parts.hostname):
        raise SettingError(
            f"{variable}={addr!r} is plaintext to a host that is not loopback: the license key would travel "
            f"unencrypted. Use https://, or set TELEMETRY_EXPORT_ALLOW_INSECURE=true if the network is trusted"
        )
    audience = f"https://{parts.netloc}" if tls else ""
    return GatewayTarget(f"{parts.hostname}:{port}", tls, audience)


def default_id_token_credentials(audience: str) -> Any:
    """Google ID token credentials for `audience`, from the environment (metadata server on Google Cloud)."""
    # Imported here: google.auth's transports are only needed, and only work, with Google credentials.
    import google.auth.transport.requests
    from google.oauth2 import id_token

    return id_token.fetch_id_token_credentials(audience, request=google.auth.transport.requests.Request())


def open_channel(
    target: GatewayTarget,
    credentials: Any = None,
    root_certificates: bytes | None = None,
    extra_options: list[tuple[str, Any]] | None = None,
) -> grpc.Channel:
    """A channel to the gateway; with TLS, every call carries `authorization: Bearer <ID token>`.

    Args:
        credentials: google.auth credentials minting ID tokens; built from the environment when None.
        root_certificates: trusted roots for TLS; the system's when None.
    """
    # Imported here: settings check TELEMETRY_GATEWAY_ADDR with this module in every command and
    # function, and only an export run needs grpc.
    import grpc

    options = _CHANNEL_OPTIONS + (extra_options or [])
    if not target.tls:
        return grpc.insecure_channel(target.host_port, options=options)
    import google.auth.transport.grpc
    import google.auth.transport.requests

    if credentials is None:
        credentials = default_id_token_credentials(target.audience)
    plugin = google.auth.transport.grpc.AuthMetadataPlugin(credentials, google.auth.transport.requests.Request())
    channel_credentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(root_certificates), grpc.metadata_call_credentials(plugin)
    )
    return grpc.secure_channel(target.host_port, channel_credentials, options=options)
