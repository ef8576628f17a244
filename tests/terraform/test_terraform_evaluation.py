"""terraform/variables.tf and checks.tf, evaluated by the real Terraform: what a plan refuses, warns about, accepts.

Copied into a scratch directory they need no provider, so `terraform plan` runs offline and evaluates every
validation (cross-variable ones included) and every `check` block exactly as on a real project.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import terraform_checks as tc
import terraform_runner as tf

pytestmark = tf.needs_terraform

REQUIRED = {"project_id": "my-telemetry-project", "instance_id": "3f1c2a9e-6b0d-4c43-9a57-2d8e5f7b1c10"}
DIGEST_IMAGE = "europe-west1-docker.pkg.dev/my-telemetry-project/telemetry-images/telemetry-gateway@sha256:" + "0" * 64
NO_CHANNEL = "No notification channel: set notification_channels or alert_email"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("variables")
    for name in ("variables.tf", "checks.tf", "versions.tf"):
        text = (tc.TERRAFORM_DIR / name).read_text(encoding="utf-8")
        if name == "versions.tf":  # keep the version constraint, not the provider (no download here)
            text = text[: text.index('provider "google"')]
            text = re.sub(r"required_providers \{.*?\n  \}\n", "", text, flags=re.S)
        (directory / name).write_text(text, encoding="utf-8")
    tf.init(directory)
    return directory


def _plan(stack: Path, **variables: Any) -> tf.Result:
    return tf.plan(stack, {**REQUIRED, "alert_email": "oncall@example.com", **variables})


def test_the_defaults_plan(stack: Path) -> None:
    result = _plan(stack)
    assert result.ok, result.output
    assert "Warning" not in result.output


def test_a_plan_without_any_notification_channel_warns(stack: Path) -> None:
    silent = tf.plan(stack, REQUIRED)
    assert silent.ok, silent.output  # a warning, not an error
    assert "Warning: Check block assertion failed" in silent.output and NO_CHANNEL in silent.output
    channel = tf.plan(stack, {**REQUIRED, "notification_channels": ["projects/p/notificationChannels/1"]})
    assert channel.ok and NO_CHANNEL not in channel.output


@pytest.mark.parametrize("ingress", ["INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"])
def test_gateway_ingress_that_would_cut_off_the_exporter_is_refused(stack: Path, ingress: str) -> None:
    result = _plan(stack, gateway_ingress=ingress)
    assert not result.ok
    assert "gateway_ingress must be INGRESS_TRAFFIC_ALL" in result.output


def test_a_gateway_request_timeout_shorter_than_the_export_timeout_is_refused(stack: Path) -> None:
    result = _plan(stack, export_function={"timeout_seconds": 600}, gateway={"request_timeout_seconds": 300})
    assert not result.ok
    assert "gateway.request_timeout_seconds must be at least export_function.timeout_seconds" in result.output
    assert _plan(stack, export_function={"timeout_seconds": 600}, gateway={"request_timeout_seconds": 600}).ok
    assert _plan(stack, export_function={"timeout_seconds": 1200}).ok, "left null, the timeout is derived"


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"license_key_secret": "telemetry-license-key", "license_key_secret_version": "latest"},
            "license_key_secret_version must be a version number",
        ),
        ({"license_key_secret": "telemetry-license-key"}, "license_key_secret and license_key_secret_version go"),
        (
            {"gateway_service_token_secret": "tokens", "gateway_service_token_secret_version": "latest"},
            "gateway_service_token_secret_version must be a version number",
        ),
        ({"gateway_service_token_secret": "tokens"}, "gateway_service_token_secret and"),
    ],
)
def test_secret_versions_must_be_pinned(stack: Path, variables: dict[str, str], message: str) -> None:
    result = _plan(stack, **variables)
    assert not result.ok and message in result.output, result.output


def test_pinned_secret_versions_are_accepted(stack: Path) -> None:
    result = _plan(
        stack,
        license_key_secret="telemetry-license-key",
        license_key_secret_version="3",
        gateway_service_token_secret="tokens",
        gateway_service_token_secret_version="1",
    )
    assert result.ok, result.output


def test_gateway_image_must_be_a_digest(stack: Path) -> None:
    tagged = DIGEST_IMAGE.split("@")[0] + ":latest"
    result = _plan(stack, gateway_image=tagged)
    assert not result.ok and "gateway_image must be pinned by digest" in result.output
    assert _plan(stack, gateway_image=DIGEST_IMAGE).ok


def test_only_the_locked_functions_runtime_is_accepted(stack: Path) -> None:
    result = _plan(stack, functions_runtime="python311")
    assert not result.ok and "requirements/functions.txt is locked for Python 3.12" in result.output


@pytest.mark.parametrize("member", ["allUsers", "allAuthenticatedUsers", "user:", "someone@example.com"])
def test_bigquery_readers_must_be_named_members(stack: Path, member: str) -> None:
    result = _plan(stack, bigquery_readers=[member])
    assert not result.ok and "bigquery_readers must be" in result.output


def test_bigquery_readers_of_each_kind_are_accepted(stack: Path) -> None:
    readers = ["user:a@example.com", "group:analysts@example.com", "serviceAccount:x@p.iam.gserviceaccount.com"]
    assert _plan(stack, bigquery_readers=[*readers, "domain:example.com"]).ok


def test_the_bigquery_oldest_unacked_alert_must_come_before_pubsub_drops_messages(stack: Path) -> None:
    result = _plan(stack, alert_bigquery_oldest_unacked_seconds=7 * 86400)
    assert not result.ok and "before the 7-day retention drops messages" in result.output


# --- destroy without the function zip -----------------------------------------------------------------------------


def _functions_tf_line(pattern: str) -> str:
    text = (tc.TERRAFORM_DIR / "functions.tf").read_text(encoding="utf-8")
    match = re.search(pattern, text, re.MULTILINE)
    assert match, pattern
    return match.group(0)


@pytest.fixture
def source_object(tmp_path: Path) -> Path:
    """The real zip-hash expressions and the bucket object's precondition, on a provider-free stand-in object."""
    zip_local = _functions_tf_line(r"^  function_source_zip\s+= .+$")
    sha_local = _functions_tf_line(r"^  function_source_sha256 = .+$")
    precondition = _functions_tf_line(r"^    precondition \{\n      condition\s+= fileexists\(.+\n.+\n    \}$")
    name = _functions_tf_line(r'^  name\s+= "functions/\$\{local\.function_source_sha256\}\.zip"$')
    (tmp_path / "main.tf").write_text(
        f"""
variable "function_source_zip" {{
  type    = string
  default = null
}}
locals {{
{zip_local}
{sha_local}
}}
resource "terraform_data" "function_source" {{
  input = {{ {name.strip().replace("name", "object", 1)} }}
  lifecycle {{
{precondition}
  }}
}}
""",
        encoding="utf-8",
    )
    tf.init(tmp_path)
    return tmp_path


def test_destroy_does_not_need_the_function_zip(source_object: Path) -> None:
    archive = source_object / "functions-source.zip"
    archive.write_bytes(b"zip bytes")
    variables = ["-var", f"function_source_zip={archive}", "-input=false", "-no-color", "-auto-approve"]
    applied = tf.run(source_object, "apply", *variables)
    assert applied.ok, applied.output
    archive.unlink()

    destroyed = tf.run(source_object, "destroy", *variables)
    assert destroyed.ok, destroyed.output
    assert "Destroy complete! Resources: 1 destroyed." in destroyed.output


def test_a_plan_that_would_upload_a_missing_zip_says_how_to_build_it(source_object: Path) -> None:
    missing = source_object / "nowhere.zip"
    result = tf.run(source_object, "plan", "-var", f"function_source_zip={missing}", "-input=false", "-no-color")
    assert not result.ok
    assert "The functions' source zip is missing: run .venv/bin/python scripts/package_functions.py" in result.output


def test_an_unguarded_hash_would_break_destroy(tmp_path: Path) -> None:
    """The guard matters: with a bare filesha256(), destroy fails once the zip is gone (so the test above can fail)."""
    archive = tmp_path / "functions-source.zip"
    archive.write_bytes(b"zip bytes")
    (tmp_path / "main.tf").write_text(
        f'resource "terraform_data" "o" {{\n  input = filesha256("{archive}")\n}}\n', encoding="utf-8"
    )
    tf.init(tmp_path)
    assert tf.run(tmp_path, "apply", "-auto-approve", "-no-color").ok
    archive.unlink()
    destroyed = tf.run(tmp_path, "destroy", "-auto-approve", "-no-color")
    assert not destroyed.ok and "no such file or directory" in destroyed.output
