"""Each deployable owns its tools: the instance side (`telemetry-export`, the functions) never needs the
gateway's code, which its package does not even contain; the license tooling lives with the gateway."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_importing_the_whole_instance_side_loads_nothing_of_the_gateway() -> None:
    code = """
import importlib, pkgutil, sys
import telemetry_export
from telemetry_export.cli.main import build_parser
build_parser()  # registers every subcommand, importing each subcommand module
for module in pkgutil.walk_packages(telemetry_export.__path__, "telemetry_export."):
    importlib.import_module(module.name)
print(sorted(name for name in sys.modules if name.split(".")[0] == "gateway_run"))
print(len([name for name in sys.modules if name.startswith("telemetry_export.")]))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded_gateway, instance_modules = result.stdout.strip().splitlines()

    assert loaded_gateway == "[]"
    assert int(instance_modules) >= 20  # the walk did import the instance side


def test_no_instance_side_source_imports_the_gateway_even_lazily() -> None:
    offenders = []
    for path in sorted((ROOT / "functions").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno}" for name in names if name.startswith("gateway_run")]

    assert offenders == []


def test_the_instance_command_line_has_no_license_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "telemetry_export.cli.main", "license", "keygen", "--private-key-file", "x.key"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )

    assert result.returncode == 2 and "invalid choice: 'license'" in result.stderr
    assert not (ROOT / "x.key").exists()
