"""License keys: genuine ones verify, everything else is refused with a reason, and the key stays secret."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_run import license as license_command
from gateway_run import licensing
from gateway_run.licensing import LicenseError

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


# --- One key, one spelling, one fingerprint ---------------------------------------------------------------------


def other_spellings(part: str) -> list[str]:
    """Texts that decode to the same bytes as the canonical base64url `part` under a lenient decoder."""
    raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    spellings = {
        base64.urlsafe_b64encode(raw).decode(),  # with its padding
        base64.b64encode(raw).decode(),  # the standard alphabet, padded
        base64.b64encode(raw).decode().rstrip("="),  # the standard alphabet
    }
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    unused_bits = {2: 4, 3: 2}.get(len(part) % 4, 0)  # in the last character, when the bytes do not fill it
    last = alphabet.index(part[-1])
    for stray in range(1, 1 << unused_bits):  # the same bytes, with stray low bits set
        spellings.add(part[:-1] + alphabet[last | stray])
    spellings.discard(part)
    return sorted(spellings)


def test_a_key_verifies_in_its_canonical_spelling_only_so_it_has_one_fingerprint(keypair: tuple[str, str]) -> None:
    key = mint(keypair, instance_id="instance-1")
    prefix, claims, signature = key.split(".")
    signature_spellings = other_spellings(signature)
    claims_spellings = other_spellings(claims)
    # A 64-byte signature leaves 4 bits of its last character unused: 15 stray spellings, plus 3 alphabets.
    assert len(signature_spellings) >= 15

    for spelling in signature_spellings:
        with pytest.raises(LicenseError, match="license_key signature is not"):
            licensing.verify(f"{prefix}.{claims}.{spelling}", public(keypair), now=NOW)
    for spelling in claims_spellings:
        with pytest.raises(LicenseError):
            licensing.verify(f"{prefix}.{spelling}.{signature}", public(keypair), now=NOW)
    assert licensing.verify(key, public(keypair), now=NOW).instance_id == "instance-1"


# --- python -m gateway_run.license ---------------------------------------------------------------------------------


def run(*argv: str) -> int:
    return license_command.main(list(argv))


def test_keygen_issue_and_verify_work_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "signing.key"

    assert run("keygen", "--private-key-file", str(key_file)) == 0
    public_line = capsys.readouterr().out.strip()
    assert public_line.startswith("TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY=")
    public_key = public_line.split("=", 1)[1]
    assert key_file.stat().st_mode & 0o777 == 0o600

    issue = ["issue", "--licensee", "Acme Corp", "--instance", "i-1", "--days", "30"]
    assert run(*issue, "--private-key-file", str(key_file)) == 0
    key = capsys.readouterr().out.strip()
    claims = licensing.verify(key, [licensing.decode_public_key(public_key)])
    assert (claims.licensee, claims.instance_id) == ("Acme Corp", "i-1")
    assert claims.expires_at - claims.issued_at == 30 * 86400

    assert run("verify", key, "--public-key", public_key) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["licensee"] == "Acme Corp" and shown["instance"] == "i-1"
    assert shown["fingerprint"] == licensing.fingerprint(key)
    assert shown["id"] == claims.key_id


def test_verify_prints_dates_as_iso_8601_utc(
    keypair: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEMETRY_LICENSE_PRIVATE_KEY", keypair[0])
    assert run("issue", "--licensee", "Acme", "--expires", "2031-01-01T12:30:00") == 0
    key = capsys.readouterr().out.strip()

    assert run("verify", key, "--public-key", keypair[1]) == 0

    shown = json.loads(capsys.readouterr().out)
    assert shown["expires"] == "2031-01-01T12:30:00Z"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", shown["issued"])


def test_issue_reads_the_private_key_itself_from_the_environment_and_takes_a_date(
    monkeypatch: pytest.MonkeyPatch, keypair: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEMETRY_LICENSE_PRIVATE_KEY", keypair[0])

    assert run("issue", "--licensee", "Acme", "--expires", "2031-01-01") == 0

    claims = licensing.verify(capsys.readouterr().out.strip(), public(keypair), now=NOW)
    assert claims.expires_at == 1924992000 and claims.instance_id is None


def test_issue_help_calls_the_variable_the_key_and_only_the_option_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run("issue", "--help")
    help_text = " ".join(capsys.readouterr().out.split())

    assert "--private-key-file PRIVATE_KEY_FILE the file holding the signing key" in help_text
    assert "the key itself is read from $TELEMETRY_LICENSE_PRIVATE_KEY" in help_text


def test_keygen_refuses_to_write_into_a_git_repository_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repository = tmp_path / "checkout"
    (repository / "deploy").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repository)], check=True)
    inside = repository / "deploy" / "signing.key"

    assert run("keygen", "--private-key-file", str(inside)) == 2
    assert "inside the git repository" in capsys.readouterr().err
    assert not inside.exists()

    assert run("keygen", "--private-key-file", str(inside), "--force") == 0
    assert inside.exists()


def test_the_repository_keeps_key_files_out_of_git_and_out_of_the_image() -> None:
    root = Path(__file__).parents[2]
    for ignore_file in (".gitignore", ".dockerignore"):
        patterns = (root / ignore_file).read_text().splitlines()
        assert "*.key" in patterns and "signing.key" in patterns, ignore_file
    assert "**/*.key" in (root / ".dockerignore").read_text().splitlines()  # .dockerignore globs from the root only
    ignored = subprocess.run(
        ["git", "-C", str(root), "check-ignore", "--no-index", "signing.key", "deploy/prod.key", "README.md"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ignored.stdout.split() == ["signing.key", "deploy/prod.key"]


def test_the_commands_refuse_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keypair: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TELEMETRY_LICENSE_PRIVATE_KEY", raising=False)
    monkeypatch.delenv("TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY", raising=False)
    existing = tmp_path / "existing.key"
    existing.write_text("keep me")
    cases = [
        (["keygen", "--private-key-file", str(existing)], "refusing to overwrite"),
        (["issue", "--licensee", "Acme"], "TELEMETRY_LICENSE_PRIVATE_KEY to the private key itself"),
        (["verify", mint(licensing.generate_keypair()), "--public-key", keypair[1]], "signature does not verify"),
        (["verify", mint(keypair)], "TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY"),
        (["issue", "--licensee", "Acme", "--expires", "next year", "--private-key-file", str(existing)], "ISO 8601"),
    ]

    for argv, message in cases:
        assert run(*argv) == 2, argv
        error = capsys.readouterr().err
        assert error.startswith("python -m gateway_run.license: error: ") and message in error, error
    assert existing.read_text() == "keep me"


def test_the_command_runs_as_a_module_with_its_exit_status(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "gateway_run.license"]

    made = subprocess.run(
        [*command, "keygen", "--private-key-file", str(tmp_path / "k")], capture_output=True, text=True
    )
    refused = subprocess.run([*command, "verify", "tgk1.x.y", "--public-key", "AAAA"], capture_output=True, text=True)

    assert made.returncode == 0 and made.stdout.startswith("TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY=")
    assert refused.returncode == 2 and "32" in refused.stderr
