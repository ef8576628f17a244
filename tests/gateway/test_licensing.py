"""License keys: genuine ones verify, everything else is refused with a reason, and the key stays secret."""

from __future__ import annotations

import argparse
import base64
import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_run import licensing
from gateway_run.licensing import LicenseError
from telemetry_export.cli import license as license_cli
from telemetry_export.cli.context import CommandFailed

NOW = 1_800_000_000


@pytest.fixture(scope="module")
def keypair() -> tuple[str, str]:
    return licensing.generate_keypair()


def public(keypair: tuple[str, str]) -> list[bytes]:
    return [licensing.decode_public_key(keypair[1])]


def mint(keypair: tuple[str, str], **claims) -> str:
    arguments = {"licensee": "Acme Corp", "expires_at": NOW + 3600, "issued_at": NOW - 60, **claims}
    return licensing.issue(keypair[0], **arguments)


def test_a_genuine_key_verifies_with_its_claims(keypair: tuple[str, str]) -> None:
    key = mint(keypair, instance_id="instance-1")

    claims = licensing.verify(key, public(keypair), now=NOW)

    assert (claims.licensee, claims.instance_id, claims.expires_at) == ("Acme Corp", "instance-1", NOW + 3600)
    assert len(claims.key_id) == 16
    assert key.startswith("tgk1.") and key.count(".") == 2


def test_any_of_several_public_keys_may_verify_during_a_rotation(keypair: tuple[str, str]) -> None:
    other = licensing.generate_keypair()

    assert licensing.verify(mint(keypair), public(other) + public(keypair), now=NOW).licensee == "Acme Corp"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("expired", "expired at"),
        ("not yet valid", "not valid before"),
        ("signed by another issuer", "signature does not verify"),
        ("claims altered", "signature does not verify"),
        ("signature altered", "signature does not verify"),
        ("truncated", "signature does not verify"),
        ("another format", "not a license key"),
        ("empty", "license_key is required"),
        ("enormous", "at most 4096"),
        ("non-ASCII", "characters that no license key has"),
        ("signature not base64", "not base64"),
    ],
)
def test_a_key_that_is_not_genuine_and_current_is_refused(keypair: tuple[str, str], name: str, message: str) -> None:
    good = mint(keypair)
    prefix, claims, signature = good.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(claims + "=="))
    decoded["licensee"] = "Someone Else"
    altered_claims = base64.urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b"=").decode()
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    keys = {
        "expired": mint(keypair, expires_at=NOW - 1, issued_at=NOW - 100),
        "not yet valid": mint(keypair, issued_at=NOW + 3600, expires_at=NOW + 7200),
        "signed by another issuer": mint(licensing.generate_keypair()),
        "claims altered": f"{prefix}.{altered_claims}.{signature}",
        "signature altered": f"{prefix}.{claims}.{flipped}",
        "truncated": good[:-10],
        "another format": "eyJhbGciOiJIUzI1NiJ9.e30.sig",
        "empty": "",
        "enormous": "tgk1." + "A" * 5000 + ".sig",
        "non-ASCII": f"{prefix}.{claims}é.{signature}",
        "signature not base64": f"{prefix}.{claims}.!!!",
    }

    with pytest.raises(LicenseError, match=message) as raised:
        licensing.verify(keys[name], public(keypair), now=NOW)
    assert good not in str(raised.value)


def test_verification_without_a_public_key_refuses(keypair: tuple[str, str]) -> None:
    with pytest.raises(LicenseError, match="no license public key"):
        licensing.verify(mint(keypair), [], now=NOW)


_FUZZ_PUBLIC_KEY = licensing.decode_public_key(licensing.generate_keypair()[1])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.builds("tgk1.{}.{}".format, st.text(max_size=100), st.text(max_size=100))))
def test_arbitrary_text_is_refused_with_a_license_error_and_nothing_else(text: str) -> None:
    with pytest.raises(LicenseError):
        licensing.verify(text, [_FUZZ_PUBLIC_KEY], now=NOW)


def test_the_fingerprint_is_stable_and_reveals_nothing_of_the_key(keypair: tuple[str, str]) -> None:
    key = mint(keypair)

    assert licensing.fingerprint(key) == licensing.fingerprint(key)
    assert licensing.fingerprint(key) != licensing.fingerprint(mint(keypair))
    assert licensing.fingerprint(key).startswith("sha256:") and len(licensing.fingerprint(key)) == 71
    for part in key.split(".")[1:]:
        assert part not in licensing.fingerprint(key)


def test_public_keys_are_accepted_in_either_base64_alphabet(keypair: tuple[str, str]) -> None:
    raw = licensing.decode_public_key(keypair[1])
    urlsafe = base64.urlsafe_b64encode(raw).decode().rstrip("=")

    assert licensing.decode_public_key(urlsafe) == raw
    with pytest.raises(LicenseError, match="32"):
        licensing.decode_public_key(base64.b64encode(b"short").decode())


# --- telemetry-export license ... ----------------------------------------------------------------------------------


def cli(*argv: str) -> int:
    """Runs the subcommand as telemetry-export would (main.py registers the module the same way)."""
    parser = argparse.ArgumentParser(prog="telemetry-export")
    license_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.run(args)


def test_keygen_issue_and_verify_work_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "signing.key"

    assert cli("license", "keygen", "--private-key-file", str(key_file)) == 0
    public_line = capsys.readouterr().out.strip()
    assert public_line.startswith("TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY=")
    public_key = public_line.split("=", 1)[1]
    assert key_file.stat().st_mode & 0o777 == 0o600

    issue = ["license", "issue", "--licensee", "Acme Corp", "--instance", "i-1", "--days", "30"]
    assert cli(*issue, "--private-key-file", str(key_file)) == 0
    key = capsys.readouterr().out.strip()
    claims = licensing.verify(key, [licensing.decode_public_key(public_key)])
    assert (claims.licensee, claims.instance_id) == ("Acme Corp", "i-1")
    assert 29 * 86400 < claims.expires_at - time.time() <= 30 * 86400

    assert cli("license", "verify", key, "--public-key", public_key) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["licensee"] == "Acme Corp" and shown["fingerprint"] == licensing.fingerprint(key)


def test_issue_reads_the_private_key_from_the_environment_and_takes_a_date(
    monkeypatch: pytest.MonkeyPatch, keypair: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEMETRY_LICENSE_PRIVATE_KEY", keypair[0])

    assert cli("license", "issue", "--licensee", "Acme", "--expires", "2031-01-01") == 0

    claims = licensing.verify(capsys.readouterr().out.strip(), public(keypair), now=NOW)
    assert claims.expires_at == 1924992000 and claims.instance_id is None


def test_the_commands_refuse_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keypair: tuple[str, str]
) -> None:
    monkeypatch.delenv("TELEMETRY_LICENSE_PRIVATE_KEY", raising=False)
    existing = tmp_path / "existing.key"
    existing.write_text("keep me")

    with pytest.raises(CommandFailed, match="refusing to overwrite"):
        cli("license", "keygen", "--private-key-file", str(existing))
    assert existing.read_text() == "keep me"
    with pytest.raises(CommandFailed, match="TELEMETRY_LICENSE_PRIVATE_KEY"):
        cli("license", "issue", "--licensee", "Acme")
    with pytest.raises(CommandFailed, match="signature does not verify"):
        cli("license", "verify", mint(licensing.generate_keypair()), "--public-key", keypair[1])
    with pytest.raises(CommandFailed, match="not an ISO 8601"):
        cli("license", "issue", "--licensee", "Acme", "--expires", "next year", "--private-key-file", str(existing))
