"""docs/deploy.md and docs/runbook.md say what the Terraform does, in an order that works on a fresh project.

A fresh project has only billing enabled: the steps must enable every API before anything uses one, name only
resources and outputs that exist, and use the license tool's real command.
"""

from __future__ import annotations

import re

import pytest
import terraform_checks as tc
from terraform_checks import only

DEPLOY = (tc.REPO_ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
RUNBOOK = (tc.REPO_ROOT / "docs" / "runbook.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def config() -> tc.Configuration:
    return tc.load_configuration()


def _shell_blocks(text: str) -> list[str]:
    """Every ```sh block, with line continuations joined."""
    return [block.replace("\\\n", " ") for block in re.findall(r"```sh\n(.*?)```", text, re.S)]


def _commands() -> list[str]:
    return [" ".join(line.split()) for block in _shell_blocks(DEPLOY) for line in block.splitlines() if line.strip()]


def _first(prefix: str) -> int:
    positions = [index for index, command in enumerate(_commands()) if command.startswith(prefix)]
    assert positions, f"no command starting with {prefix!r}"
    return positions[0]


def test_step_zero_enables_every_api_terraform_uses(config: tc.Configuration) -> None:
    enable = _commands()[_first("gcloud services enable")]
    documented = set(re.findall(r"[a-z]+\.googleapis\.com", enable))
    listed = config.resource("google_project_service", "enabled")["for_each"]
    declared = set(re.findall(r"[a-z]+\.googleapis\.com", listed.split("var.db_private_network")[0]))
    private = set(re.findall(r"[a-z]+\.googleapis\.com", listed.split("var.db_private_network")[1]))
    assert declared and documented == declared
    assert {"serviceusage.googleapis.com", "cloudresourcemanager.googleapis.com"} <= documented
    section = DEPLOY[DEPLOY.index("## 0. Enable the APIs") : DEPLOY.index("## 1. Configure")]
    assert all(api in section for api in private), "the private-network APIs are named too"


def test_nothing_uses_an_api_before_step_zero_enabled_it() -> None:
    enable = _first("gcloud services enable")
    assert enable < _first("gcloud secrets create")
    assert enable < _first("terraform apply")
    assert enable < _first("scripts/build_gateway_image.sh")
    assert DEPLOY.index("## 0. Enable the APIs") < DEPLOY.index("gcloud secrets create")


def test_the_bootstrap_targets_exist_and_cover_what_the_image_build_needs(config: tc.Configuration) -> None:
    bootstrap = next(command for command in _commands() if command.startswith("terraform apply -target"))
    targets = re.findall(r"-target=(\S+)", bootstrap)
    for target in targets:
        tftype, name = target.split(".")
        assert (tftype, name) in config.resources, f"{target} is not a resource of terraform/"
    assert "google_cloud_run_v2_service.gateway" not in targets, "the gateway needs the image built after bootstrap"
    for needed in (
        "google_artifact_registry_repository_iam_member.build_pushes_images",
        "google_storage_bucket_iam_member.build_reads_source",
        "google_project_iam_member.build_log_writer",
        "google_sql_user.admin",
    ):
        assert needed in targets, needed
    assert _first("terraform apply -target") < _first("scripts/build_gateway_image.sh")


def test_outputs_named_in_the_docs_exist(config: tc.Configuration) -> None:
    named = set(re.findall(r"terraform(?: -chdir=terraform)? output(?: -raw)? (\w+)", DEPLOY))
    assert {"build_service_account", "build_staging_dir", "images_repository"} <= named
    assert named <= set(config.outputs), f"unknown outputs {named - set(config.outputs)}"


def test_license_lifecycle_uses_the_gateway_side_tool() -> None:
    section = DEPLOY[DEPLOY.index("## 2. License keys") : DEPLOY.index("## 3. Package the functions")]
    for action in ("keygen", "issue", "verify"):
        assert f"python -m gateway_run.license {action}" in section, action
    assert "telemetry-export license" not in DEPLOY
    for variable in ("gateway_license_public_keys", "license_key_secret", "license_key_secret_version"):
        assert f"{variable} " in section or f"{variable} =" in section, variable
    assert "### Rotation" in section and "comma-separated" in section
    assert "latest" in section  # says why versions are pinned


def test_deletion_protection_table_names_each_protected_resource_with_its_scope() -> None:
    section = DEPLOY[DEPLOY.index("## 1. Configure") : DEPLOY.index("## 2. License keys")]
    assert "| Cloud SQL instance | Terraform (`deletion_protection`) and the Cloud SQL API itself" in section
    assert "| BigQuery events table | Terraform only" in section
    assert "| Cloud Run gateway | Terraform only" in section
    assert "deletion in the console" not in DEPLOY


def test_the_runbook_says_what_the_probes_do(config: tc.Configuration) -> None:
    template = only(config.resource("google_cloud_run_v2_service", "gateway")["template"])
    container = only(template["containers"])
    assert only(only(container["liveness_probe"])["grpc"])["service"] == "liveness"
    assert "service" not in only(only(container["startup_probe"])["grpc"])
    assert "probes restart an instance that lost" not in RUNBOOK
    assert "No probe restarts an instance that lost Pub/Sub" in RUNBOOK


def test_every_alert_policy_has_a_runbook_section(config: tc.Configuration) -> None:
    headings = {heading.lower() for heading in re.findall(r"^## (.+?) \(", RUNBOOK, re.MULTILINE)}
    for name, policy in config.of_type("google_monitoring_alert_policy").items():
        title = policy["display_name"].removeprefix("telemetry-export: ").lower()
        assert title in headings, f"{name}: no runbook section for {title!r}"
