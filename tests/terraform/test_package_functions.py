"""scripts/package_functions.py builds the function source zip reproducibly, with what main.py imports.

Terraform names the bucket object after the zip's SHA-256: a zip that changes without a code change redeploys
the functions for nothing, and one that misses a module deploys a function that cannot start.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from tests import deployables

REPO_ROOT = Path(__file__).resolve().parents[2]


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("package_functions", REPO_ROOT / "scripts" / "package_functions.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


packager = _load_script()

MAIN_PY = """
import functions_framework
from telemetry_export.jobs import cleanup_exported_events as cleanup_exported_events

@functions_framework.http
def export_events(request):
    return "ok"

report_queue_metrics = export_events
"""

LOCK = """# Locked dependencies (test)
functions-framework==3.10.2 \\
    --hash=sha256:aaaa \\
    --hash=sha256:bbbb
    # via pyproject.toml
pg8000==1.31.6 \\
    --hash=sha256:cccc
"""


@pytest.fixture
def source_tree(tmp_path: Path) -> Path:
    """A minimal repository with the layout the packager expects."""
    root = tmp_path / "repo"
    files = {
        "requirements/functions.txt": LOCK,
        "functions/main.py": MAIN_PY,
        "functions/telemetry_export/__init__.py": "",
        "functions/telemetry_export/jobs.py": "def cleanup_exported_events(request): ...\n",
        "functions/telemetry_export/migrations/0001_queue.sql": "create table q ();\n",
        "functions/telemetry_export/cli/__init__.py": "",
        "telemetry_events/__init__.py": "",
        "telemetry_events/py.typed": "",
        "telemetry_events/telemetrygateway/v1/telemetrygateway_pb2.py": "# generated\n",
        "gateway_run/__init__.py": "",  # not needed by the functions: must stay out
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    cache = root / "telemetry_events" / "__pycache__"
    cache.mkdir()
    (cache / "x.cpython-311.pyc").write_bytes(b"\0")
    (root / "functions/telemetry_export/_ext.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    return root


def test_zip_holds_main_the_two_packages_and_requirements(source_tree: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.zip"
    packager.build(source_tree, output)
    with zipfile.ZipFile(output) as archive:
        names = archive.namelist()
        requirements = archive.read("requirements.txt").decode()
    assert names == sorted(names)
    assert names == [
        "main.py",
        "requirements.txt",
        "telemetry_events/__init__.py",
        "telemetry_events/py.typed",
        "telemetry_events/telemetrygateway/v1/telemetrygateway_pb2.py",
        "telemetry_export/__init__.py",
        "telemetry_export/cli/__init__.py",
        "telemetry_export/jobs.py",
        "telemetry_export/migrations/0001_queue.sql",
    ]
    assert requirements == LOCK, "requirements.txt is the functions' lock file, byte for byte"


@pytest.mark.parametrize(
    ("lock", "refusal"),
    [
        (None, "does not exist: run scripts/lock_requirements.py"),
        ("# only comments\n", "pins nothing"),
        ("functions-framework>=3.8,<4\n", "without a pinned version and hashes: functions-framework>=3.8,<4"),
        ("pg8000==1.31.6\n    # via pyproject.toml\n", "without a pinned version and hashes: pg8000==1.31.6"),
    ],
)
def test_a_missing_or_unhashed_lock_refuses_to_package(
    source_tree: Path, tmp_path: Path, lock: str | None, refusal: str
) -> None:
    path = source_tree / "requirements" / "functions.txt"
    if lock is None:
        path.unlink()
    else:
        path.write_text(lock)
    with pytest.raises(packager.PackagingError, match=refusal):
        packager.build(source_tree, tmp_path / "out.zip")


def test_entries_have_fixed_timestamps_and_permissions(source_tree: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.zip"
    packager.build(source_tree, output)
    with zipfile.ZipFile(output) as archive:
        for info in archive.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0), info.filename
            assert info.external_attr >> 16 == 0o100644, info.filename
            assert info.compress_type == zipfile.ZIP_STORED


def test_same_tree_gives_the_same_bytes_whatever_the_file_times(source_tree: Path, tmp_path: Path) -> None:
    first = packager.build(source_tree, tmp_path / "a.zip")
    for path in source_tree.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    (source_tree / "functions" / "telemetry_export" / "jobs.py").chmod(0o755)
    second = packager.build(source_tree, tmp_path / "b.zip")
    assert first == second == hashlib.sha256((tmp_path / "b.zip").read_bytes()).hexdigest()


def test_a_code_change_changes_the_hash(source_tree: Path, tmp_path: Path) -> None:
    before = packager.build(source_tree, tmp_path / "a.zip")
    (source_tree / "telemetry_events" / "__init__.py").write_text("VERSION = 2\n")
    assert packager.build(source_tree, tmp_path / "b.zip") != before


def test_missing_entry_point_refuses_to_package(source_tree: Path, tmp_path: Path) -> None:
    (source_tree / "functions" / "main.py").write_text("def export_events(request): ...\n")
    with pytest.raises(packager.PackagingError, match="cleanup_exported_events, report_queue_metrics"):
        packager.build(source_tree, tmp_path / "out.zip")


def test_command_line_prints_the_hash_and_fails_cleanly(
    source_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "cli.zip"
    assert packager.main(["--root", str(source_tree), "--output", str(output)]) == 0
    digest = capsys.readouterr().out.split()[0]
    assert digest == hashlib.sha256(output.read_bytes()).hexdigest()
    (source_tree / "functions" / "main.py").unlink()
    assert packager.main(["--root", str(source_tree), "--output", str(output)]) == 1
    assert "main.py does not exist" in capsys.readouterr().err


def test_the_repository_itself_packages(tmp_path: Path) -> None:
    output = tmp_path / "functions-source.zip"
    packager.build(REPO_ROOT, output)
    with zipfile.ZipFile(output) as archive:
        names = set(archive.namelist())
        requirements = archive.read("requirements.txt")
    assert {"main.py", "requirements.txt", "telemetry_export/__init__.py", "telemetry_events/__init__.py"} <= names
    assert not [n for n in names if "__pycache__" in n or n.startswith(("gateway_run/", "tests/", "localdev/"))]
    assert requirements == deployables.LOCKS["functions"].read_bytes()


FUNCTIONS_TREE = deployables.SourceTree(
    {
        "telemetry_export": REPO_ROOT / "functions" / "telemetry_export",
        "telemetry_events": REPO_ROOT / "telemetry_events",
    }
)


def test_everything_the_functions_import_is_shipped_or_locked() -> None:
    """From functions/main.py, every module reached is in the zip or installed from requirements/functions.txt."""
    reached = deployables.third_party_imports([REPO_ROOT / "functions" / "main.py"], FUNCTIONS_TREE)
    assert {"functions_framework", "pg8000.dbapi", "google.cloud.sql.connector"} <= set(reached), "import scan is blind"
    pinned = set(deployables.load_lock("functions").pins)
    assert deployables.uncovered_imports([REPO_ROOT / "functions" / "main.py"], FUNCTIONS_TREE, pinned) == []


def test_the_import_check_names_what_the_lock_would_miss() -> None:
    """Checked against the gateway's lock, the functions' own packages are reported: the check can fail."""
    problems = deployables.uncovered_imports(
        [REPO_ROOT / "functions" / "main.py"], FUNCTIONS_TREE, set(deployables.load_lock("gateway").pins)
    )
    assert any(
        p.startswith("functions_framework (in main.py): functions-framework is not in the lock") for p in problems
    )
    assert any(p.startswith("pg8000.dbapi") for p in problems), problems
