"""The container image: what Cloud Run needs of it, and the same dependencies as pyproject.toml.

(No Docker daemon is needed: the file is checked, not built.)"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[2]
DOCKERFILE = (ROOT / "gateway_run" / "Dockerfile").read_text()


def test_the_image_installs_the_gateway_dependencies_with_the_projects_specifiers() -> None:
    declared = {
        re.split(r"[<>=!~\[]", requirement, maxsplit=1)[0].lower(): requirement
        for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    installed = re.findall(r'"([A-Za-z0-9_.\-]+[<>=!~][^"]*)"', DOCKERFILE)

    assert installed, "no pinned requirements found in the Dockerfile"
    for requirement in installed:
        name = re.split(r"[<>=!~]", requirement, maxsplit=1)[0].lower()
        assert declared.get(name) == requirement, f"{requirement} differs from pyproject.toml's {declared.get(name)}"
    for needed in ("google-cloud-pubsub", "grpcio", "grpcio-health-checking", "grpcio-reflection", "protobuf"):
        assert any(r.lower().startswith(needed) for r in installed), needed


def test_the_image_runs_the_gateway_as_pid_1_without_root() -> None:
    command = re.search(r"^CMD (.+)$", DOCKERFILE, re.MULTILINE)

    assert command and json.loads(command.group(1)) == ["python", "-m", "gateway_run"]  # exec form
    assert re.search(r"^USER (?!root|0\b)", DOCKERFILE, re.MULTILINE)
    assert "COPY telemetry_events/" in DOCKERFILE and "COPY gateway_run/" in DOCKERFILE


def test_every_module_the_gateway_imports_is_in_the_image() -> None:
    copied = {"gateway_run", "telemetry_events"}
    for path in (ROOT / "gateway_run").glob("*.py"):
        for module in re.findall(r"^\s*(?:from|import) ([a-z_]+)", path.read_text(), re.MULTILINE):
            if module in {"localdev", "telemetry_export", "tests", "benchmarks"}:
                raise AssertionError(f"{path.name} imports {module}, which the image does not contain")
    assert all((ROOT / package / "__init__.py").exists() for package in copied)
