"""What each deployable installs and imports, read from files: the lock files, pyproject.toml and the sources.

Used by tests/terraform/test_lock_files.py, tests/terraform/test_package_functions.py and
tests/gateway/test_dockerfile.py. Everything here is offline: a lock file is compared with what pyproject.toml
declares (its recorded inputs, and every declared requirement pinned inside its range), never resolved again.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
LOCKS = {"functions": ROOT / "requirements" / "functions.txt", "gateway": ROOT / "requirements" / "gateway.txt"}


@dataclass(frozen=True)
class LockFile:
    """One requirements/<deployable>.txt: the inputs its header records and the pins with their hash counts."""

    python: str
    platform: str
    extra: str
    requirements: tuple[str, ...]
    pins: dict[str, Version]  # canonical name -> pinned version
    hash_counts: dict[str, int]  # canonical name -> number of --hash entries
    loose_lines: tuple[str, ...]  # requirement lines that are not `name==version`


def parse_lock(text: str) -> LockFile:
    inputs: dict[str, str] = {}
    requirements: list[str] = []
    pins: dict[str, Version] = {}
    hash_counts: dict[str, int] = {}
    loose: list[str] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#   "):
            key, _, value = stripped.removeprefix("#").strip().partition(": ")
            if key == "requirement":
                requirements.append(value)
            else:
                inputs[key] = value
            continue
        if not stripped or stripped.startswith("#"):
            continue
        if not line[0].isspace():
            spec = stripped.removesuffix("\\").strip()
            name, separator, version = spec.partition("==")
            if not separator or any(c in name for c in "<>=!~[@ ;"):
                loose.append(spec)
                current = ""
                continue
            current = canonicalize_name(name)
            pins[current] = Version(version)
            hash_counts[current] = 0
        elif stripped.startswith("--hash=sha256:") and current:
            hash_counts[current] += 1
    return LockFile(
        python=inputs.get("python", ""),
        platform=inputs.get("platform", ""),
        extra=inputs.get("extra", ""),
        requirements=tuple(requirements),
        pins=pins,
        hash_counts=hash_counts,
        loose_lines=tuple(loose),
    )


def declared(pyproject_text: str, extra: str) -> list[str]:
    """What a deployable is resolved from: [project].dependencies plus one extra, as written in pyproject.toml."""
    project = tomllib.loads(pyproject_text)["project"]
    return [*project["dependencies"], *project["optional-dependencies"][extra]]


def staleness(lock: LockFile, pyproject_text: str) -> list[str]:
    """Why the lock no longer matches pyproject.toml (empty when it does)."""
    problems: list[str] = []
    wanted = declared(pyproject_text, lock.extra)
    normal = sorted(str(Requirement(r)) for r in wanted)
    recorded = sorted(str(Requirement(r)) for r in lock.requirements)
    if normal != recorded:
        added = sorted(set(normal) - set(recorded))
        removed = sorted(set(recorded) - set(normal))
        problems.append(f"declared requirements changed since the lock was made: added {added}, removed {removed}")
    for text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name not in lock.pins:
            problems.append(f"{requirement.name} is declared but not pinned")
        elif not requirement.specifier.contains(lock.pins[name], prereleases=True):
            problems.append(f"{requirement.name}=={lock.pins[name]} is outside the declared {requirement.specifier}")
    problems.extend(f"{name} is pinned without a hash" for name, count in lock.hash_counts.items() if count == 0)
    problems.extend(f"{line!r} is not pinned to one version" for line in lock.loose_lines)
    return problems


def load_lock(deployable: str) -> LockFile:
    return parse_lock(LOCKS[deployable].read_text(encoding="utf-8"))


# --- imports ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    """One imported name: the modules it may refer to, most specific first (`from a import b` may import a.b)."""

    candidates: tuple[str, ...]
    file: Path


def imports_of(path: Path, package: str) -> list[Import]:
    """Every import in one file, lazy ones inside functions included, with relative imports made absolute.

    `package` is the dotted package the file belongs to ("" for a top-level script such as functions/main.py).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(Import((alias.name,), path) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*base_parts, node.module] if node.module else base_parts)
            else:
                base = node.module or ""
            found.extend(Import((f"{base}.{alias.name}", base), path) for alias in node.names)
    return found


@dataclass(frozen=True)
class SourceTree:
    """First-party packages by name -> their directory (what a deployable ships)."""

    packages: dict[str, Path]

    def file_of(self, module: str) -> Path | None:
        top, _, rest = module.partition(".")
        if top not in self.packages:
            return None
        base = self.packages[top].joinpath(*rest.split(".")) if rest else self.packages[top]
        for candidate in (base / "__init__.py", base.with_suffix(".py")):
            if candidate.is_file():
                return candidate
        return None

    def package_of(self, path: Path) -> str:
        for name, directory in self.packages.items():
            if path.is_relative_to(directory):
                relative = path.relative_to(directory).with_suffix("")
                return ".".join([name, *relative.parts[:-1]])  # a module's package; __init__ is its own
        return ""


def third_party_imports(entry_points: Iterable[Path], tree: SourceTree) -> dict[str, set[str]]:
    """Third-party modules imported by the entry points and every first-party module they reach -> files."""
    pending = list(entry_points)
    seen: set[Path] = set()
    found: dict[str, set[str]] = {}
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for item in imports_of(path, tree.package_of(path)):
            top = item.candidates[0].split(".")[0]
            if top in tree.packages:
                reached = next((f for f in map(tree.file_of, item.candidates) if f is not None), None)
                if reached is None:
                    found.setdefault(item.candidates[-1], set()).add(path.name)  # a first-party module not shipped
                else:
                    pending.append(reached)
            elif top not in sys.stdlib_module_names:
                module = next((c for c in item.candidates if _provided(c)), item.candidates[-1])
                found.setdefault(module, set()).add(path.name)
    return found


def _provided(module: str) -> bool:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin not in (None, "built-in", "frozen", "namespace")


@cache
def _file_owners() -> dict[Path, str]:
    owners: dict[Path, str] = {}
    for distribution in importlib.metadata.distributions():
        name = canonicalize_name(distribution.metadata["Name"])
        for file in distribution.files or ():
            if file.suffix in (".py", ".so", ".pyi"):
                owners[Path(str(distribution.locate_file(file))).resolve()] = name
    return owners


def owning_distribution(module: str) -> str | None:
    """The installed distribution that provides `module` (e.g. google.cloud.pubsub_v1 -> google-cloud-pubsub)."""
    if not _provided(module):
        return None
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    return _file_owners().get(Path(spec.origin).resolve())


def uncovered_imports(entry_points: Iterable[Path], tree: SourceTree, pinned: set[str]) -> list[str]:
    """Modules the deployable imports that neither it ships nor its lock installs (module: why, and where)."""
    problems: list[str] = []
    for module, files in sorted(third_party_imports(entry_points, tree).items()):
        where = ", ".join(sorted(files))
        if module.split(".")[0] in tree.packages:
            problems.append(f"{module} (in {where}): a first-party module the deployable does not ship")
            continue
        owner = owning_distribution(module)
        if owner is None:
            problems.append(f"{module} (in {where}): no installed distribution provides it")
        elif owner not in pinned:
            problems.append(f"{module} (in {where}): {owner} is not in the lock")
    return problems
