"""Running the real Terraform on provider-free parts of terraform/, offline.

`terraform validate` and `plan` of the whole configuration need the google provider, which cannot be downloaded
here. Variable validations, `check` blocks and the pure schedule_spread module need no provider at all: copied
into a scratch directory, `terraform init` succeeds offline and `terraform plan` / `apply` evaluate them exactly as
they would on a real project. The tests that do this skip when the terraform CLI is not installed (scripts/setup.sh
warns about that at setup).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TERRAFORM = shutil.which("terraform")
needs_terraform = pytest.mark.skipif(
    TERRAFORM is None,
    reason="terraform CLI not on PATH: this test runs the real Terraform (>= 1.9) offline on provider-free parts "
    "of terraform/; install it to run it (scripts/setup.sh warns when it is missing)",
)


@dataclass(frozen=True)
class Result:
    returncode: int
    output: str  # stdout and stderr, without colours

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run(directory: Path, *args: str) -> Result:
    assert TERRAFORM is not None
    completed = subprocess.run(
        [TERRAFORM, *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", "HOME": str(directory)},
    )
    # Terraform wraps long messages; joining the lines lets a test look for a whole sentence.
    text = " ".join((completed.stdout + completed.stderr).replace("│", " ").split())
    return Result(completed.returncode, text)


def init(directory: Path) -> None:
    result = run(directory, "init", "-input=false", "-no-color", "-backend=false")
    assert result.ok, result.output


def plan(directory: Path, variables: Mapping[str, Any]) -> Result:
    (directory / "test.auto.tfvars.json").write_text(json.dumps(variables), encoding="utf-8")
    return run(directory, "plan", "-input=false", "-no-color", "-lock=false", "-refresh=false")


def outputs(directory: Path) -> dict[str, Any]:
    """The root module's outputs after an apply, as {name: value}."""
    result = subprocess.run(
        [str(TERRAFORM), "output", "-json"], cwd=directory, capture_output=True, text=True, timeout=60, check=True
    )
    return {name: output["value"] for name, output in json.loads(result.stdout).items()}
