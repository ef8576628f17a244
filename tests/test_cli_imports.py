"""A command imports what its run needs and no more; the functions' cold start skips the exporter's gRPC.

Each case runs in a fresh interpreter and reads `sys.modules` when it exits: what a command
line run or a function's cold start loads is what it pays for, in CPU, on every run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from localdev.scripted_gateway import ScriptedGateway
from telemetry_events.export_mode import ExportScope
from telemetry_events.redaction import policy_from
from telemetry_export.cli.main import COMMAND_MODULES, SUBCOMMAND_MODULES
from telemetry_export.recording import record_events
from telemetry_export.sample_events import sample_events

ROOT = Path(__file__).resolve().parents[1]
GOOGLE_CLIENTS = ("google.auth", "google.cloud.pubsub_v1", "google.cloud.monitoring_v3", "google.cloud.sql")
# Modules only other commands need.
OTHER_COMMANDS = (
    "telemetry_export.recording",
    "telemetry_export.sample_events",
    "telemetry_export.cleanup",
    "telemetry_export.migrate",
    "telemetry_export.cli.inspect_queue",
    "telemetry_export.cli.record",
)

_RUN_CLI = """
import atexit, json, sys
atexit.register(lambda: print("MODULES " + json.dumps(sorted(sys.modules)), file=sys.stderr))
from telemetry_export.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def run_cli(*argv: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    result = subprocess.run(
        [sys.executable, "-c", _RUN_CLI, *argv],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = result.stderr.splitlines()
    modules = next(json.loads(line[8:]) for line in lines if line.startswith("MODULES "))
    return result, set(modules)


def loaded(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return [p for p in packages if p in modules]


def test_each_command_is_found_in_the_module_that_registers_it():
    registered: dict[str, str] = {}
    for name in SUBCOMMAND_MODULES:
        subparsers = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(name).register(subparsers)
        registered.update({command: name for command in subparsers.choices})
    assert COMMAND_MODULES == registered


def test_help_lists_every_command_without_grpc_or_google_clients():
    result, modules = run_cli("--help")
    assert result.returncode == 0, result.stderr
    # argparse lists each command on a line of its own, indented by four spaces (help text wraps deeper).
    assert re.findall(r"^    (\w+)", result.stdout, flags=re.MULTILINE) == [
        "db",
        "record",
        "export",
        "cleanup",
        "metrics",
        "queue",
        "preview",
        "exported",
        "quarantine",
        "tail",
    ]
    assert loaded(modules, ("grpc", *GOOGLE_CLIENTS)) == []


def test_queue_status_loads_neither_grpc_nor_other_commands_even_with_a_gateway_address(database_url):
    env = {"DATABASE_URL": database_url, "TELEMETRY_GATEWAY_ADDR": "https://gateway.example.com"}
    result, modules = run_cli("queue", "status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["queue_backlog"] == 0
    assert loaded(modules, ("grpc", *GOOGLE_CLIENTS, "telemetry_export.exporter", *OTHER_COMMANDS)) == []


def test_an_export_run_over_plaintext_loads_grpc_and_nothing_it_does_not_use(conn, database_url):
    record_events(conn, list(sample_events(5, seed=3)), policy_from(), ExportScope())
    gateway = ScriptedGateway().start()
    try:
        env = {"DATABASE_URL": database_url, "TELEMETRY_GATEWAY_ADDR": gateway.url, "TELEMETRY_INSTANCE_ID": "i"}
        result, modules = run_cli("export", env=env)
    finally:
        gateway.stop()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["exported"] == 5
    assert "grpc" in modules  # what the run needs: the watch above can see a module load
    assert loaded(modules, (*GOOGLE_CLIENTS, "functions_framework", *OTHER_COMMANDS)) == []


def test_the_functions_cold_start_loads_no_grpc_until_an_export_runs():
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'functions')!r}); import main; "
        "print(','.join(m for m in ('grpc', 'flask', 'pg8000') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "flask,pg8000"  # cleanup and metrics share main.py: they never pay for grpc
