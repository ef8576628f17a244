"""Each deployable installs one hashed lock file, made from its extra of pyproject.toml, and the lock is current.

requirements/functions.txt becomes the function zip's requirements.txt; requirements/gateway.txt is what the
gateway image installs. Both are written by scripts/lock_requirements.py. These tests run offline: they compare
each lock's recorded inputs and pins with pyproject.toml instead of resolving again, so changing a dependency
without relocking fails here (and the staleness check is itself shown to catch each kind of drift).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tests import deployables

ROOT = deployables.ROOT
PYPROJECT_TEXT = deployables.PYPROJECT.read_text(encoding="utf-8")
DEPLOYABLES = ("functions", "gateway")


@pytest.mark.parametrize("deployable", DEPLOYABLES)
def test_lock_matches_what_pyproject_declares(deployable: str) -> None:
    lock = deployables.load_lock(deployable)
    assert lock.extra == deployable
    assert lock.requirements, "the lock records no inputs"
    problems = deployables.staleness(lock, PYPROJECT_TEXT)
    assert problems == [], f"requirements/{deployable}.txt is stale: run scripts/lock_requirements.py\n" + "\n".join(
        problems
    )


@pytest.mark.parametrize("deployable", DEPLOYABLES)
def test_every_pin_is_one_version_with_hashes(deployable: str) -> None:
    lock = deployables.load_lock(deployable)
    assert len(lock.pins) >= 10, "a lock pins transitive dependencies too"
    assert lock.loose_lines == ()
    assert min(lock.hash_counts.values()) >= 1
    assert lock.platform == "x86_64-manylinux_2_28"


def test_functions_lock_is_resolved_for_the_terraform_runtime() -> None:
    variables = (ROOT / "terraform" / "variables.tf").read_text(encoding="utf-8")
    block = variables[variables.index('variable "functions_runtime"') :]
    runtime = re.search(r'default\s*=\s*"python(\d)(\d+)"', block)
    assert runtime, "functions_runtime has no pythonNNN default"
    assert deployables.load_lock("functions").python == f"{runtime.group(1)}.{runtime.group(2)}"
    allowed = re.search(r"contains\(\[([^]]*)\], var\.functions_runtime\)", block)
    assert allowed and re.findall(r'"([^"]+)"', allowed.group(1)) == [f"python{runtime.group(1)}{runtime.group(2)}"], (
        "functions_runtime must accept only the Python the function lock is resolved for"
    )


def test_gateway_lock_is_resolved_for_the_image_python() -> None:
    dockerfile = (ROOT / "gateway_run" / "Dockerfile").read_text(encoding="utf-8")
    base = re.search(r"python:(\d+\.\d+)-slim[-\w]*@sha256:[0-9a-f]{64}", dockerfile)
    assert base, "the Dockerfile's base image is not python:X.Y-slim pinned by digest"
    assert deployables.load_lock("gateway").python == base.group(1)


def test_each_lock_holds_only_its_own_deployables_packages() -> None:
    functions = set(deployables.load_lock("functions").pins)
    gateway = set(deployables.load_lock("gateway").pins)
    for package in ("grpcio-health-checking", "grpcio-reflection", "google-cloud-pubsub"):
        assert package in gateway and package not in functions, package
    for package in ("functions-framework", "flask", "pg8000", "cloud-sql-python-connector"):
        assert package in functions and package not in gateway, package


# --- the staleness check catches each kind of drift ---------------------------------------------------------------


def _edited(old: str, new: str) -> str:
    assert old in PYPROJECT_TEXT, old
    return PYPROJECT_TEXT.replace(old, new, 1)


def test_a_dependency_added_to_an_extra_makes_the_lock_stale() -> None:
    lock = deployables.load_lock("gateway")
    edited = _edited("gateway = [\n", 'gateway = [\n    "aiohttp>=3",\n')
    problems = deployables.staleness(lock, edited)
    assert any("added ['aiohttp>=3']" in p for p in problems), problems
    assert any("aiohttp is declared but not pinned" in p for p in problems), problems


def test_a_narrowed_range_that_excludes_the_pin_makes_the_lock_stale() -> None:
    lock = deployables.load_lock("functions")
    pinned = lock.pins[canonicalize_name("pg8000")]
    edited = _edited('"pg8000>=1.31,<2"', f'"pg8000>{pinned},<2"')
    problems = deployables.staleness(lock, edited)
    assert any(f"pg8000=={pinned} is outside the declared" in p for p in problems), problems


def test_a_shared_dependency_change_makes_both_locks_stale() -> None:
    edited = _edited('"grpcio>=1.85.1,<2"', '"grpcio>=1.85.1,<3"')
    for deployable in DEPLOYABLES:
        assert deployables.staleness(deployables.load_lock(deployable), edited), deployable


def test_a_pin_without_hashes_or_a_range_is_refused() -> None:
    text = deployables.LOCKS["gateway"].read_text(encoding="utf-8")
    first_pin = re.search(r"^([a-z0-9-]+)==\S+ \\\n(    --hash=sha256:\w+ \\?\n)+", text, re.MULTILINE)
    assert first_pin
    unhashed = text.replace(first_pin.group(0), f"{first_pin.group(1)}>=0\n", 1)
    problems = deployables.staleness(deployables.parse_lock(unhashed), PYPROJECT_TEXT)
    assert any(f"'{first_pin.group(1)}>=0' is not pinned to one version" in p for p in problems), problems


def test_the_lock_script_names_the_same_files_and_pythons() -> None:
    script = (ROOT / "scripts" / "lock_requirements.py").read_text(encoding="utf-8")
    for deployable in DEPLOYABLES:
        lock = deployables.load_lock(deployable)
        assert f'Deployable("{deployable}", "{deployable}", "{lock.python}"' in script
    assert Path(deployables.LOCKS["functions"]).relative_to(ROOT).as_posix() == "requirements/functions.txt"
