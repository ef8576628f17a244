"""The README's "Running the functions by hand" section, run as written: the docs cannot drift.

The commands are taken from the README itself (the `sh` block after the marker comment) and run
with bash from a scratch directory that looks like the repository's root (`.venv` and
`functions` linked in), so the logs they write land there. Only what must differ on a shared
machine is swapped, each swap checked to have happened: the database URL (the test's own, fresh
database) and the four ports (free ones). Their output must match the `text` block that follows,
line by line; inside JSON answers, only the values that vary between runs (durations, times) may
differ.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from localdev.ports import free_port
from localdev.processes import start_group, stop_group

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- Run as written by tests/test_readme_functions.py"
README_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/telemetry"
README_PORTS = ("8080", "8081", "8082", "8083")
VARYING = {"duration_s", "exported_before", "quarantined_before", "measured_at"}


def documented_blocks(readme: str) -> tuple[str, list[str]]:
    """(the commands, the lines they are documented to print), from the blocks after the marker."""
    after = readme[readme.index(MARKER) :]
    commands = re.search(r"```sh\n(.*?)```", after, re.DOTALL)
    output = re.search(r"```text\n(.*?)```", after[commands.end() :], re.DOTALL)
    assert commands is not None and output is not None, "the README lost its tested blocks"
    return commands.group(1), output.group(1).splitlines()


def swapped(commands: str, database_url: str, ports: dict[str, int]) -> str:
    """The commands with the test's database and ports; fails if one of the expected values is not there."""
    assert commands.count(README_DATABASE_URL) == 1, "the README's database URL changed: update the test"
    commands = commands.replace(README_DATABASE_URL, database_url)
    for documented, port in ports.items():
        pattern = rf"(?<=[:= ]){documented}\b"
        assert re.search(pattern, commands), f"port {documented} is no longer in the README's commands"
        commands = re.sub(pattern, str(port), commands)
    return commands


@pytest.fixture
def fresh_database(postgres_server) -> Iterator[str]:
    """An empty database, as the README asks for: its commands migrate it themselves."""
    name = postgres_server.create_database("readme_functions")
    try:
        yield postgres_server.url_for(name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture
def scratch_root(tmp_path) -> Path:
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "functions").symlink_to(ROOT / "functions")
    return tmp_path


def test_the_documented_commands_print_what_the_readme_shows(fresh_database, scratch_root):
    assert shutil.which("curl"), "the README's commands call the functions with curl"
    commands, documented = documented_blocks((ROOT / "README.md").read_text())
    script = swapped(commands, fresh_database, {port: free_port() for port in README_PORTS})
    (scratch_root / "commands.sh").write_text(script)
    # A clean environment, as in a new shell: nothing from this test process leaks in.
    env = {"PATH": os.environ["PATH"], "HOME": str(scratch_root), "LANG": "C.UTF-8"}
    log = scratch_root / "output.txt"

    process = start_group(["bash", "-e", "commands.sh"], log, env=env, cwd=scratch_root)
    try:
        status = process.wait(timeout=240)
    finally:
        stop_group(process)  # whatever the commands left running, if they failed before their `kill`
    printed = log.read_text().splitlines()

    assert status == 0, "\n".join(printed[-40:])
    assert len(printed) == len(documented), "\n".join(printed)
    for line, shown in zip(printed, documented, strict=True):
        if shown.startswith("{"):
            answer, expected = json.loads(line), json.loads(shown)
            assert list(answer) == list(expected), (line, shown)
            assert {k: v for k, v in answer.items() if k not in VARYING} == {
                k: v for k, v in expected.items() if k not in VARYING
            }, (line, shown)
        else:
            assert line == shown
    assert (scratch_root / "gateway.log").exists()  # the logs went where the README says
