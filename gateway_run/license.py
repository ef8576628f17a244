"""The gateway operator's license tooling: make the signing key pair, issue license keys, check one.

    python -m gateway_run.license keygen --private-key-file ~/secrets/signing.key
    python -m gateway_run.license issue --licensee "Acme Corp" --instance INSTANCE_ID --days 365 \\
        --private-key-file ~/secrets/signing.key
    python -m gateway_run.license verify KEY --public-key BASE64

(`telemetry-gateway-license` is the same command as a console script.) The public key printed
by `keygen` is the gateway's TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY; the private key stays with
whoever issues licenses, never in a repository or an image: `keygen` refuses to write inside a
git work tree without --force, and .gitignore and .dockerignore exclude `*.key`. `issue` takes
the private key from a file, or the key itself from TELEMETRY_LICENSE_PRIVATE_KEY; `verify`
takes the public key from --public-key or TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY.

Exit status: 0 done, 2 refused (the message says why).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from gateway_run import licensing

PRIVATE_KEY_VARIABLE = "TELEMETRY_LICENSE_PRIVATE_KEY"
PUBLIC_KEY_VARIABLE = "TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY"
PROGRAM = "python -m gateway_run.license"


class Refused(Exception):
    """The command cannot do what was asked; the message says why and what to do."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="Make the gateway's signing key pair, issue license keys, verify one."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    keygen = commands.add_parser("keygen", help="make a new signing key pair; prints the public key")
    keygen.add_argument(
        "--private-key-file",
        type=Path,
        required=True,
        help="where to write the private key (must not exist; outside any git repository)",
    )
    keygen.add_argument(
        "--force", action="store_true", help="write the private key even inside a git repository's work tree"
    )
    keygen.set_defaults(run=run_keygen)

    issue = commands.add_parser("issue", help="mint a license key; prints it on stdout")
    issue.add_argument("--licensee", required=True, help="who the key is issued to (shown in the gateway's logs)")
    issue.add_argument("--instance", help="bind the key to this instance ID (default: valid for any instance)")
    until = issue.add_mutually_exclusive_group()
    until.add_argument("--days", type=float, default=365.0, help="valid for this many days (default 365)")
    until.add_argument("--expires", help="valid until this date or time, ISO 8601 (e.g. 2026-12-31), UTC unless given")
    issue.add_argument(
        "--private-key-file",
        type=Path,
        help=f"the file holding the signing key; without it, the key itself is read from ${PRIVATE_KEY_VARIABLE}",
    )
    issue.set_defaults(run=run_issue)

    verify = commands.add_parser("verify", help="check a license key and print its claims as JSON")
    verify.add_argument("key", help="the license key, or - to read it from stdin")
    verify.add_argument("--public-key", help=f"base64 public key(s), comma-separated (default: ${PUBLIC_KEY_VARIABLE})")
    verify.set_defaults(run=run_verify)
    return parser


def run_keygen(args: argparse.Namespace) -> int:
    path: Path = args.private_key_file
    if path.exists():
        raise Refused(f"{path} exists already: refusing to overwrite a signing key")
    repository = enclosing_git_work_tree(path)
    if repository is not None and not args.force:
        raise Refused(
            f"{path} is inside the git repository {repository}: a signing key there is one commit or image "
            "build away from leaking. Keep it elsewhere (or in Secret Manager), or pass --force"
        )
    private_key, public_key = licensing.generate_keypair()
    # Created readable by its owner only, before the secret is written into it.
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as error:
        raise Refused(f"cannot create {path}: {error.strerror}") from None
    with os.fdopen(descriptor, "w") as file:
        file.write(private_key + "\n")
    print(f"private key written to {path}", file=sys.stderr)
    print(f"{PUBLIC_KEY_VARIABLE}={public_key}")
    return 0


def run_issue(args: argparse.Namespace) -> int:
    private_key = _private_key(args.private_key_file)
    now = int(time.time())
    expires_at = _parse_time(args.expires) if args.expires else now + int(args.days * 86400)
    try:
        key = licensing.issue(private_key, args.licensee, expires_at, instance_id=args.instance, issued_at=now)
    except licensing.LicenseError as error:
        raise Refused(str(error)) from None
    print(key)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    key = sys.stdin.read().strip() if args.key == "-" else args.key.strip()
    public_key = args.public_key or os.environ.get(PUBLIC_KEY_VARIABLE, "")
    if not public_key.strip():
        raise Refused(f"give --public-key or set {PUBLIC_KEY_VARIABLE}")
    try:
        keys = [licensing.decode_public_key(item) for item in public_key.split(",") if item.strip()]
        claims = licensing.verify(key, keys)
    except licensing.LicenseError as error:
        raise Refused(str(error)) from None
    shown: dict[str, object] = {
        "licensee": claims.licensee,
        "instance": claims.instance_id,
        "issued": licensing.iso_utc(claims.issued_at),
        "expires": licensing.iso_utc(claims.expires_at),
        "id": claims.key_id,
        "fingerprint": licensing.fingerprint(key),
    }
    print(json.dumps(shown, indent=2))
    return 0


def enclosing_git_work_tree(path: Path) -> Path | None:
    """The git work tree `path` would be written into (a `.git` directory or file above it), or None."""
    directory = path.expanduser().absolute().parent
    for candidate in (directory, *directory.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def _private_key(path: Path | None) -> str:
    if path is not None:
        try:
            return path.read_text().strip()
        except OSError as error:
            raise Refused(f"cannot read the private key file: {error}") from None
    value = os.environ.get(PRIVATE_KEY_VARIABLE, "").strip()
    if not value:
        raise Refused(f"give --private-key-file or set {PRIVATE_KEY_VARIABLE} to the private key itself")
    return value


def _parse_time(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Refused(f"--expires {text!r} is not an ISO 8601 date or time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except Refused as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
