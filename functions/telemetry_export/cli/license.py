"""`telemetry-export license`: make the gateway's signing key pair, issue license keys, check one.

    telemetry-export license keygen --private-key-file signing.key
    telemetry-export license issue --licensee "Acme Corp" --instance INSTANCE_ID --days 365 \\
        --private-key-file signing.key
    telemetry-export license verify KEY --public-key BASE64

The public key printed by `keygen` is the gateway's TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY; the
private key stays with whoever issues licenses. Every flag has an environment twin
(TELEMETRY_LICENSE_PRIVATE_KEY, TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY). The key format and its
checks live in gateway_run.licensing, imported only when a license command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

PRIVATE_KEY_VARIABLE = "TELEMETRY_LICENSE_PRIVATE_KEY"
PUBLIC_KEY_VARIABLE = "TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("license", help="make signing keys, issue and verify license keys")
    commands = parser.add_subparsers(dest="license_command", metavar="ACTION", required=True)

    keygen = commands.add_parser("keygen", help="make a new signing key pair; prints the public key")
    keygen.add_argument(
        "--private-key-file", type=Path, required=True, help="where to write the private key (must not exist)"
    )
    keygen.set_defaults(run=run_keygen)

    issue = commands.add_parser("issue", help="mint a license key; prints it on stdout")
    issue.add_argument("--licensee", required=True, help="who the key is issued to (shown in the gateway's logs)")
    issue.add_argument("--instance", help="bind the key to this instance ID (default: valid for any instance)")
    until = issue.add_mutually_exclusive_group()
    until.add_argument("--days", type=float, default=365.0, help="valid for this many days (default 365)")
    until.add_argument("--expires", help="valid until this date or time, ISO 8601 (e.g. 2026-12-31)")
    issue.add_argument("--private-key-file", type=Path, help=f"the signing key (default: ${PRIVATE_KEY_VARIABLE})")
    issue.set_defaults(run=run_issue)

    verify = commands.add_parser("verify", help="check a license key and print its claims as JSON")
    verify.add_argument("key", help="the license key, or - to read it from stdin")
    verify.add_argument("--public-key", help=f"base64 public key (default: ${PUBLIC_KEY_VARIABLE})")
    verify.set_defaults(run=run_verify)


def run_keygen(args: argparse.Namespace) -> int:
    from gateway_run import licensing

    path: Path = args.private_key_file
    if path.exists():
        raise _error(f"{path} exists already: refusing to overwrite a signing key")
    private_key, public_key = licensing.generate_keypair()
    # Created readable by its owner only, before the secret is written into it.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(private_key + "\n")
    print(f"private key written to {path}", file=sys.stderr)
    print(f"{PUBLIC_KEY_VARIABLE}={public_key}")
    return 0


def run_issue(args: argparse.Namespace) -> int:
    from gateway_run import licensing

    private_key = _private_key(args.private_key_file)
    now = int(time.time())
    expires_at = _parse_time(args.expires) if args.expires else now + int(args.days * 86400)
    try:
        key = licensing.issue(private_key, args.licensee, expires_at, instance_id=args.instance, issued_at=now)
    except licensing.LicenseError as error:
        raise _error(str(error)) from None
    print(key)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from gateway_run import licensing

    key = sys.stdin.read().strip() if args.key == "-" else args.key.strip()
    public_key = args.public_key or os.environ.get(PUBLIC_KEY_VARIABLE, "")
    if not public_key:
        raise _error(f"give --public-key or set {PUBLIC_KEY_VARIABLE}")
    try:
        keys = [licensing.decode_public_key(item) for item in public_key.split(",") if item.strip()]
        claims = licensing.verify(key, keys)
    except licensing.LicenseError as error:
        raise _error(str(error)) from None
    print(json.dumps({**claims.to_json(), "fingerprint": licensing.fingerprint(key)}, indent=2))
    return 0


def _private_key(path: Path | None) -> str:
    if path is not None:
        try:
            return path.read_text().strip()
        except OSError as error:
            raise _error(f"cannot read the private key: {error}") from None
    value = os.environ.get(PRIVATE_KEY_VARIABLE, "").strip()
    if not value:
        raise _error(f"give --private-key-file or set {PRIVATE_KEY_VARIABLE}")
    return value


def _parse_time(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _error(f"--expires {text!r} is not an ISO 8601 date or time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _error(message: str) -> Exception:
    from telemetry_export.cli.context import CommandFailed

    return CommandFailed(message)
