"""terraform/ is formatted and every resource matches the google provider 8.x schema, checked offline.

`terraform validate` cannot run here (no provider download), so these tests stand in for it: `terraform fmt` for
syntax and layout, and the committed provider schema for arguments and blocks. The negative tests prove each
kind of mistake is caught, so a green run means something.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import terraform_checks as tc
from terraform_runner import TERRAFORM, needs_terraform


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return tc.load_schema()


@pytest.fixture(scope="module")
def documents() -> dict[Path, dict[str, Any]]:
    return {path: tc.parse_file(path) for path in tc.tf_files()}


def _fmt(*args: str, stdin: str | None = None, cwd: Path = tc.REPO_ROOT) -> subprocess.CompletedProcess[str]:
    assert TERRAFORM is not None
    return subprocess.run(
        [TERRAFORM, "fmt", *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


# --- terraform fmt ---------------------------------------------------------------------------------------------


@needs_terraform
def test_terraform_files_are_formatted() -> None:
    result = _fmt("-check", "-recursive", "-diff", "terraform")
    assert result.returncode == 0, f"run `terraform fmt -recursive terraform`:\n{result.stdout}{result.stderr}"


@needs_terraform
def test_tfvars_example_is_formatted() -> None:
    example = (tc.TERRAFORM_DIR / "terraform.tfvars.example").read_text(encoding="utf-8")
    result = _fmt("-check", "-", stdin=example)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_terraform
def test_fmt_check_fails_on_misformatted_file(tmp_path: Path) -> None:
    (tmp_path / "bad.tf").write_text('resource "google_pubsub_topic" "t" {\nname="x"\n    project = "p"\n}\n')
    result = _fmt("-check", "-recursive", str(tmp_path))
    assert result.returncode != 0
    assert "bad.tf" in result.stdout


# --- the committed schema --------------------------------------------------------------------------------------


def test_committed_schema_is_google_provider_8(schema: dict[str, Any]) -> None:
    assert str(schema["provider_version"]).startswith("8."), schema["provider_version"]
    versions = tc.load_configuration().terraform
    pinned = [p["google"]["version"] for t in versions for p in t.get("required_providers", [])]
    assert pinned == ["~> 8.0"]


def test_committed_schema_covers_every_type_used(documents: dict[Path, dict[str, Any]], schema: dict[str, Any]) -> None:
    used = {(d.kind, d.type) for d in tc.declarations(documents) if d.type.startswith("google_")}
    missing = sorted(f"{kind}.{tftype}" for kind, tftype in used if tftype not in schema[kind])
    assert not missing, f"regenerate: python scripts/extract_provider_schema.py --download  (missing {missing})"


def test_every_resource_matches_the_provider_schema(
    documents: dict[Path, dict[str, Any]], schema: dict[str, Any]
) -> None:
    declarations = list(tc.declarations(documents))
    assert len(declarations) > 40  # the whole configuration was read, not an empty directory
    errors = tc.check_documents(documents, schema)
    assert errors == [], "\n".join(errors)


# --- the check catches mistakes --------------------------------------------------------------------------------


def test_unknown_argument_is_reported_with_a_suggestion(schema: dict[str, Any]) -> None:
    errors = tc.check_text(
        'resource "google_pubsub_topic" "t" {\n  name = "x"\n  mesage_retention_duration = "600s"\n}\n', schema
    )
    assert len(errors) == 1
    assert "unknown argument or block 'mesage_retention_duration'" in errors[0]
    assert "did you mean 'message_retention_duration'" in errors[0]


def test_missing_required_argument_is_reported(schema: dict[str, Any]) -> None:
    errors = tc.check_text('resource "google_cloud_scheduler_job" "j" {\n  schedule = "* * * * *"\n}\n', schema)
    assert errors == ["snippet.tf:1 google_cloud_scheduler_job.j: missing required argument 'name'"]


def test_missing_required_nested_argument_is_reported(schema: dict[str, Any]) -> None:
    text = """
resource "google_cloud_scheduler_job" "j" {
  name = "j"
  http_target {
    http_method = "POST"
    oidc_token {
      audience = "https://example.com"
    }
  }
}
"""
    errors = tc.check_text(text, schema)
    assert any("http_target: missing required argument 'uri'" in e for e in errors), errors
    assert any("oidc_token: missing required argument 'service_account_email'" in e for e in errors), errors


def test_missing_required_block_is_reported(schema: dict[str, Any]) -> None:
    errors = tc.check_text('resource "google_cloud_run_v2_service" "s" {\n  name = "s"\n  location = "l"\n}\n', schema)
    assert errors == ["snippet.tf:1 google_cloud_run_v2_service.s: missing required block 'template'"]


def test_block_and_argument_confusions_are_reported(schema: dict[str, Any]) -> None:
    text = """
resource "google_pubsub_topic" "t" {
  name = "t"
  labels {
    team = "x"
  }
  message_storage_policy = {
    allowed_persistence_regions = ["europe-west1"]
  }
}
"""
    errors = tc.check_text(text, schema)
    assert any("'labels' is an argument" in e for e in errors), errors
    assert any("'message_storage_policy' is a block" in e for e in errors), errors


def test_single_block_repeated_is_reported(schema: dict[str, Any]) -> None:
    text = """
resource "google_cloud_run_v2_service" "s" {
  name     = "s"
  location = "l"
  template {
    containers {
      image = "i"
      ports {
        container_port = 8080
      }
      ports {
        container_port = 8081
      }
    }
  }
}
"""
    errors = tc.check_text(text, schema)
    assert any("block 'ports' may appear at most once, found 2" in e for e in errors), errors


def test_dynamic_blocks_are_checked_like_static_ones(schema: dict[str, Any]) -> None:
    text = """
resource "google_cloud_run_v2_service" "s" {
  name     = "s"
  location = "l"
  template {
    containers {
      image = "i"
      dynamic "envs" {
        for_each = {}
        content {
          name = "A"
        }
      }
      dynamic "env" {
        for_each = {}
        content {
          nme = "A"
        }
      }
    }
  }
}
"""
    errors = tc.check_text(text, schema)
    assert any("dynamic block for unknown block 'envs'" in e for e in errors), errors
    assert any("unknown argument or block 'nme'" in e for e in errors), errors
    assert any("env: missing required argument 'name'" in e for e in errors), errors


def test_literal_outside_the_providers_enum_is_reported(schema: dict[str, Any]) -> None:
    text = 'resource "google_cloud_run_v2_service" "s" {\n  name = "s"\n  location = "l"\n'
    text += '  ingress = "INTERNAL"\n  template {}\n}\n'
    errors = tc.check_text(text, schema)
    assert len(errors) == 1 and "ingress = 'INTERNAL' is not one of the provider's values" in errors[0], errors


def test_meta_arguments_and_interpolated_values_are_accepted(schema: dict[str, Any]) -> None:
    text = """
resource "google_pubsub_topic" "t" {
  for_each   = toset(["a", "b"])
  name       = each.value
  depends_on = [google_pubsub_topic.other]
  provider   = google
  lifecycle {
    prevent_destroy = true
    precondition {
      condition     = true
      error_message = "x"
    }
  }
}
resource "google_cloud_run_v2_service" "s" {
  name     = "s"
  location = "l"
  ingress  = var.ingress
  template {}
}
"""
    assert tc.check_text(text, schema) == []


def test_a_typo_in_the_real_configuration_is_caught(schema: dict[str, Any]) -> None:
    source = (tc.TERRAFORM_DIR / "functions.tf").read_text(encoding="utf-8")
    assert "    timeout_seconds " in source
    broken = source.replace("    timeout_seconds ", "    timeout_second ", 1)
    errors = tc.check_text(broken, schema, name="functions.tf")
    assert any("unknown argument or block 'timeout_second'" in e for e in errors), errors
