"""scripts/build_gateway_image.sh builds as the stack's build account, with a digest-pinned builder.

Cloud Build cannot run here, so `gcloud` is replaced by a recording stand-in on PATH (a boundary fake): each test
checks the exact command line and build config the script would send, and the stand-in answers the digest lookup.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "build_gateway_image.sh"
REPOSITORY = "europe-west1-docker.pkg.dev/my-project/telemetry-images"
ACCOUNT = "projects/my-project/serviceAccounts/telemetry-fn-build@my-project.iam.gserviceaccount.com"
STAGING = "gs://my-project-telemetry-fn-source/gateway-build-source"
DIGEST = "sha256:" + "ab" * 32

FAKE_GCLOUD = """#!/usr/bin/env bash
# Records each call; keeps a copy of the build config (the script deletes its temporary file).
printf '%s\\n' "$*" >>"$RECORD_DIR/calls"
for argument in "$@"; do
  case "$argument" in --config=*) cp "${argument#--config=}" "$RECORD_DIR/config.yaml" ;; esac
done
if [[ "$1 $2" == "artifacts docker" ]]; then echo "$FAKE_DIGEST"; fi
"""


@pytest.fixture
def fake_gcloud(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(FAKE_GCLOUD)
    gcloud.chmod(0o755)
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "RECORD_DIR": str(tmp_path),
        "FAKE_DIGEST": DIGEST,
        "HOME": str(tmp_path),
    }


def _run(env: dict[str, str], **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), REPOSITORY, "v1"], env={**env, **extra}, capture_output=True, text=True, timeout=60, check=False
    )


def test_refuses_to_build_without_a_build_service_account(fake_gcloud: dict[str, str], tmp_path: Path) -> None:
    result = _run(fake_gcloud, BUILD_STAGING_DIR=STAGING)
    assert result.returncode == 2
    assert "set BUILD_SERVICE_ACCOUNT=projects/PROJECT/serviceAccounts/EMAIL" in result.stderr
    assert not (tmp_path / "calls").exists(), "gcloud must not be called: the build would run as the default account"


def test_refuses_to_build_without_a_staging_dir(fake_gcloud: dict[str, str], tmp_path: Path) -> None:
    result = _run(fake_gcloud, BUILD_SERVICE_ACCOUNT=ACCOUNT)
    assert result.returncode == 2
    assert "set BUILD_STAGING_DIR=gs://BUCKET/PATH" in result.stderr
    assert not (tmp_path / "calls").exists()


def test_builds_as_the_given_account_with_a_pinned_builder(fake_gcloud: dict[str, str], tmp_path: Path) -> None:
    result = _run(fake_gcloud, BUILD_SERVICE_ACCOUNT=ACCOUNT, BUILD_STAGING_DIR=STAGING)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{REPOSITORY}/telemetry-gateway@{DIGEST}"
    submit, describe = (tmp_path / "calls").read_text().splitlines()
    arguments = submit.split()
    assert arguments[:3] == ["builds", "submit", "."]
    for expected in (
        f"--service-account={ACCOUNT}",
        f"--gcs-source-staging-dir={STAGING}",
        "--ignore-file=.dockerignore",
        "--project=my-project",
        "--region=europe-west1",
    ):
        assert expected in arguments, f"{expected} not in {submit}"
    assert describe.startswith(f"artifacts docker images describe {REPOSITORY}/telemetry-gateway:v1 ")
    config = (tmp_path / "config.yaml").read_text()
    builders = re.findall(r"^\s*- name: (\S+)$", config, re.MULTILINE)
    assert builders and all(re.fullmatch(r"gcr\.io/cloud-builders/docker@sha256:[0-9a-f]{64}", b) for b in builders)
    assert "logging: CLOUD_LOGGING_ONLY" in config  # required with a user-specified build service account
