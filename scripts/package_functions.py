#!/usr/bin/env python3
"""Package the Cloud Functions source into a reproducible zip and print its SHA-256.

Why reproducible: Terraform names the bucket object after the zip's SHA-256, so the functions are redeployed
exactly when their code changes. That only works if packaging the same tree twice (or on another machine) gives
the same bytes, so the zip has sorted entries, one fixed timestamp (1980-01-01, the earliest a zip can hold), fixed
permissions, and stored (uncompressed) entries: DEFLATE output can differ between zlib builds, while the source is
small enough that compression does not matter.

Contents (what `functions/main.py` imports at run time, as Cloud Functions expects them at the zip root):
    main.py               functions/main.py (the three HTTP entry points)
    telemetry_export/     functions/telemetry_export
    telemetry_events/     telemetry_events (shared: generated API, validation, redaction)
    requirements.txt      requirements/functions.txt: the [functions] extra of pyproject.toml, locked with hashes
                          (scripts/lock_requirements.py), installed by the Cloud Functions build in hash-checking
                          mode, so every build installs the same files and nothing the functions do not import

Usage:
    python scripts/package_functions.py                  # writes build/functions-source.zip
    python scripts/package_functions.py --output X.zip
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = Path("build") / "functions-source.zip"

ENTRY_POINTS = ("export_events", "cleanup_exported_events", "report_queue_metrics")
# (source directory relative to the repository root, directory name inside the zip)
PACKAGES = (("functions/telemetry_export", "telemetry_export"), ("telemetry_events", "telemetry_events"))

FIXED_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644  # regular file, rw-r--r--
_EXCLUDED_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
# .so: recording's C extension, compiled in place for this machine's Python; the functions do not record, and a
# binary built here would make the zip's bytes depend on the machine that packaged it.
_EXCLUDED_SUFFIXES = {".pyc", ".pyo", ".so"}


class PackagingError(RuntimeError):
    """The source tree cannot be packaged as it is; the message says what is missing."""


LOCK_FILE = Path("requirements") / "functions.txt"


def requirements_text(root: Path) -> str:
    """requirements.txt for the Cloud Functions build: the functions' lock file, unchanged.

    The lock pins every package with its hashes, which puts pip in hash-checking mode: a file whose hash is not
    listed is refused, so the build installs exactly what was locked. A lock without hashes is refused here.
    """
    lock = root / LOCK_FILE
    if not lock.is_file():
        raise PackagingError(f"{lock} does not exist: run scripts/lock_requirements.py")
    text = lock.read_text(encoding="utf-8")
    hashes: dict[str, int] = {}
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not line[0].isspace():
            current = stripped.removesuffix("\\").strip()
            hashes[current] = 0
        elif stripped.startswith("--hash=sha256:") and current:
            hashes[current] += 1
    if not hashes:
        raise PackagingError(f"{lock} pins nothing: run scripts/lock_requirements.py")
    loose = sorted(pin for pin, count in hashes.items() if "==" not in pin or count == 0)
    if loose:
        raise PackagingError(f"{lock} has requirements without a pinned version and hashes: {', '.join(loose)}")
    return text


def entry_points_defined(main_py: Path) -> set[str]:
    """Names main.py defines or imports at top level, so a missing entry point fails here rather than on deploy."""
    tree = ast.parse(main_py.read_text(encoding="utf-8"), filename=str(main_py))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update(alias.asname or alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return names


def _package_files(source: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    for path in source.rglob("*"):
        relative = path.relative_to(source)
        if not path.is_file() or path.suffix in _EXCLUDED_SUFFIXES:
            continue
        if any(part in _EXCLUDED_DIRS or part.startswith(".") for part in relative.parts):
            continue
        yield f"{prefix}/{relative.as_posix()}", path


def collect(root: Path) -> dict[str, bytes]:
    """Zip entry name -> content, for everything the functions need."""
    main_py = root / "functions" / "main.py"
    if not main_py.is_file():
        raise PackagingError(f"{main_py} does not exist")
    missing = [name for name in ENTRY_POINTS if name not in entry_points_defined(main_py)]
    if missing:
        raise PackagingError(f"{main_py} does not define the entry point(s) {', '.join(missing)}")

    entries: dict[str, bytes] = {"main.py": main_py.read_bytes()}
    for source_dir, prefix in PACKAGES:
        source = root / source_dir
        if not (source / "__init__.py").is_file():
            raise PackagingError(f"{source} is not a Python package (no __init__.py)")
        entries.update((name, path.read_bytes()) for name, path in _package_files(source, prefix))
    entries["requirements.txt"] = requirements_text(root).encode("utf-8")
    return entries


def write_zip(entries: dict[str, bytes], output: Path) -> str:
    """Write the entries reproducibly and return the zip's SHA-256 (hex)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIMESTAMP)
            info.external_attr = FILE_MODE << 16
            info.create_system = 3  # Unix, so the mode above is honoured whatever system builds the zip
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, entries[name])
    temporary.replace(output)
    return hashlib.sha256(output.read_bytes()).hexdigest()


def build(root: Path, output: Path) -> str:
    """Package root's functions into output; returns the SHA-256."""
    return write_zip(collect(root), output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root (default: this checkout)")
    parser.add_argument("--output", type=Path, default=None, help=f"zip to write (default: ROOT/{DEFAULT_OUTPUT})")
    args = parser.parse_args(argv)
    output = args.output or args.root / DEFAULT_OUTPUT
    try:
        digest = build(args.root, output)
    except PackagingError as error:
        print(f"package_functions: {error}", file=sys.stderr)
        return 1
    print(f"{digest}  {output}")
    print(f"bucket object: functions/{digest}.zip", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
