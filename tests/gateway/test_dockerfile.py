"""The container image: what Cloud Run needs of it, built reproducibly from the gateway's lock file.

(No Docker daemon is needed: the file is checked, not built.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests import deployables

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "gateway_run" / "Dockerfile").read_text()
INSTRUCTIONS = [line for line in DOCKERFILE.splitlines() if line and not line.startswith("#")]
GATEWAY_TREE = deployables.SourceTree(
    {"gateway_run": ROOT / "gateway_run", "telemetry_events": ROOT / "telemetry_events"}
)


def _gateway_sources() -> list[Path]:
    # The image copies both packages whole, so every module in them can run there (python -m gateway_run.X).
    return sorted(GATEWAY_TREE.packages["gateway_run"].rglob("*.py")) + sorted(
        GATEWAY_TREE.packages["telemetry_events"].rglob("*.py")
    )


def test_every_base_image_is_pinned_by_digest() -> None:
    arguments = dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE, re.MULTILINE))
    bases = [line.split()[1] for line in INSTRUCTIONS if line.startswith("FROM ")]
    assert len(bases) == 2, "a build stage and the runtime stage"
    for base in bases:
        image = arguments.get(base.strip("${}"), base)
        assert re.fullmatch(r"[\w./-]+(:[\w.-]+)?@sha256:[0-9a-f]{64}", image), f"{base} is not pinned by digest"


def test_the_image_installs_only_the_gateway_lock_in_hash_checking_mode() -> None:
    installs = [line for line in INSTRUCTIONS if "pip install" in line]
    assert len(installs) == 1, installs
    assert "COPY requirements/gateway.txt /tmp/requirements.txt" in INSTRUCTIONS
    flags = installs[0].split()
    for flag in ("--require-hashes", "--no-deps", "--only-binary=:all:"):
        assert flag in flags, f"{flag} missing from {installs[0]}"
    assert flags[-2:] == ["-r", "/tmp/requirements.txt"], "nothing is installed besides the lock"


def test_everything_the_gateway_imports_is_copied_or_locked() -> None:
    reached = deployables.third_party_imports(_gateway_sources(), GATEWAY_TREE)
    assert {"grpc", "google.cloud.pubsub_v1", "cryptography.hazmat.primitives.asymmetric.ed25519"} & set(reached), (
        "the import scan found none of the gateway's known imports"
    )
    pinned = set(deployables.load_lock("gateway").pins)
    assert deployables.uncovered_imports(_gateway_sources(), GATEWAY_TREE, pinned) == []


def test_the_import_check_fails_for_a_module_the_image_lacks(tmp_path: Path) -> None:
    """A gateway module importing the functions' database driver or the test plumbing is reported."""
    package = tmp_path / "gateway_run"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "bad.py").write_text("import pg8000.dbapi\n\ndef f():\n    from localdev import gateway\n")
    tree = deployables.SourceTree({"gateway_run": package})
    problems = deployables.uncovered_imports([package / "bad.py"], tree, set(deployables.load_lock("gateway").pins))
    assert [problem.split(" (in ")[0] for problem in problems] == ["localdev.gateway", "pg8000.dbapi"], problems
    assert problems[1] == "pg8000.dbapi (in bad.py): pg8000 is not in the lock"


def test_the_image_runs_the_gateway_as_pid_1_without_root() -> None:
    command = re.search(r"^CMD (.+)$", DOCKERFILE, re.MULTILINE)

    assert command and json.loads(command.group(1)) == ["python", "-m", "gateway_run"]  # exec form
    assert re.search(r"^USER (?!root|0\b)", DOCKERFILE, re.MULTILINE)
    copies = [line.split()[1:] for line in INSTRUCTIONS if line.startswith("COPY ") and "--from" not in line]
    assert ["telemetry_events/", "telemetry_events/"] in copies and ["gateway_run/", "gateway_run/"] in copies
