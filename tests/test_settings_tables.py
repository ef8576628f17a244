"""The settings tables of README.md and docs/gateway.md show each setting as it is declared: default, range, meaning.

The tables are written by scripts/write_settings_tables.py; these tests fail, naming the row, when a table was
edited by hand or a declaration changed without rewriting them.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from telemetry_events.envvars import FUNCTIONS, Choice, Deployable, Flag, Integer, Seconds, Text

ROOT = Path(__file__).resolve().parents[1]
EXPECTED_TABLES = {
    "README.md": [Deployable.FUNCTIONS, Deployable.GATEWAY],
    "docs/gateway.md": [Deployable.GATEWAY],
}


def _load_writer():
    path = ROOT / "scripts" / "write_settings_tables.py"
    spec = importlib.util.spec_from_file_location("write_settings_tables", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


writer = _load_writer()


def _rows(table: str) -> dict[str, tuple[str, ...]]:
    """variable -> its row's other cells, for every row of a markdown table under its header."""
    rows: dict[str, tuple[str, ...]] = {}
    for line in table.splitlines()[2:]:
        cells = tuple(cell.strip() for cell in line.strip().removeprefix("|").removesuffix("|").split("|"))
        rows[cells[0].strip("`")] = cells[1:]
    return rows


def differences(document: str, deployable: Deployable, written: str) -> list[str]:
    """Each way the written table differs from the declarations, one line per row."""
    where = f"{document}, {deployable} table"
    expected, actual = _rows(writer.table(deployable)), _rows(written)
    problems = [f"{where}: {name} is declared but has no row" for name in expected if name not in actual]
    problems += [f"{where}: {name} has a row but no declaration" for name in actual if name not in expected]
    for name in expected.keys() & actual.keys():
        if len(actual[name]) != 2:
            problems.append(f"{where}: {name}: the row has {len(actual[name])} cells after the variable, not 2")
            continue
        for column, written, declared in zip(("default", "meaning"), actual[name], expected[name], strict=True):
            if written != declared:
                problems.append(f"{where}: {name}: {column} is {written!r}, declared {declared!r}")
    return sorted(problems)


@pytest.mark.parametrize("document", sorted(EXPECTED_TABLES))
def test_the_settings_tables_show_the_declarations_row_by_row(document: str) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    tables = writer.tables_in(text)
    assert [deployable for deployable, _ in tables] == EXPECTED_TABLES[document], f"{document} lost a table marker"

    for deployable, written in tables:
        problems = differences(document, deployable, written)
        assert not problems, "\n".join([*problems, "run: python scripts/write_settings_tables.py"])
        assert written == writer.table(deployable), f"{document}: the {deployable} table's order or layout changed"


def test_a_default_edited_by_hand_is_named_with_its_declaration() -> None:
    written = writer.table(Deployable.FUNCTIONS)
    row = "| `TELEMETRY_EXPORT_BATCH_SIZE` | `10000` |"
    edited = written.replace(row, row.replace("10000", "20000"))
    assert edited != written

    assert differences("README.md", Deployable.FUNCTIONS, edited) == [
        "README.md, functions table: TELEMETRY_EXPORT_BATCH_SIZE: default is '`20000`', declared '`10000`'"
    ]


def test_the_script_finds_nothing_to_rewrite() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "write_settings_tables.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("seconds", "written"),
    [
        (0.5, "0.5s"),
        (30, "30s"),
        (300, "300s"),
        (600, "10m"),
        (3600, "1h"),
        (7200, "2h"),
        (86400, "24h"),
        (30 * 86400, "30d"),
    ],
)
def test_durations_are_written_as_the_readers_accept_them(seconds: float, written: str) -> None:
    assert writer.duration(seconds) == written


@pytest.mark.parametrize(
    ("setting", "default", "accepted"),
    [
        (
            Integer("A", 10_000, minimum=100, maximum=100_000, meaning="m", read_by=FUNCTIONS),
            "`10000`",
            "100 to 100,000",
        ),
        (
            Integer("A", 12 << 20, minimum=64 << 10, maximum=4 << 30, unit="bytes", meaning="m", read_by=FUNCTIONS),
            "`12582912` (12 MiB)",
            "64 KiB to 4 GiB",
        ),
        (
            Integer("A", 9_000_000, minimum=1024, maximum=10_000_000, unit="bytes", meaning="m", read_by=FUNCTIONS),
            "`9000000`",
            "1 KiB to 10,000,000 bytes",
        ),
        (Integer("A", 10, minimum=1, meaning="m", read_by=FUNCTIONS), "`10`", "at least 1"),
        (Seconds("A", 86400.0, minimum=0, meaning="m", read_by=FUNCTIONS), "`24h`", "at least 0s"),
        (Seconds("A", 10.0, maximum=600, meaning="m", read_by=FUNCTIONS), "`10s`", "at most 10m"),
        (Choice("A", "b", allowed=("a", "b", "c"), meaning="m", read_by=FUNCTIONS), "`b`", "`a`, `b` or `c`"),
        (Flag("A", False, meaning="m", read_by=FUNCTIONS), "`false`", ""),
        (Text("A", "", meaning="m", read_by=FUNCTIONS), "unset", ""),
        (Text("A", "", shown_default="required", meaning="m", read_by=FUNCTIONS), "required", ""),
        (Text("A", "global", meaning="m", read_by=FUNCTIONS), "`global`", ""),
    ],
)
def test_defaults_and_ranges_as_the_tables_write_them(setting, default: str, accepted: str) -> None:
    assert (writer.default_text(setting), writer.range_text(setting)) == (default, accepted)
    assert writer.row(setting) == f"| `A` | {default} | m{f' ({accepted})' if accepted else ''} |\n"


# A default quoted in prose: "`NAME` (10 s)", "`NAME` (default 60 s, ...)", "`NAME` times (default 10)",
# "`NAME`, 24 h by default".
QUOTED_DEFAULT = re.compile(
    r"`(?P<name>[A-Z][A-Z0-9_]+)`(?: times)?"
    r"(?: \((?:default )?|, )(?P<number>\d[\d,.]*) ?(?P<unit>s|min|h|d|days|KiB|MiB|GiB|)(?=[);,]| by default)"
)
UNITS = {"": 1, "s": 1, "min": 60, "h": 3600, "d": 86400, "days": 86400, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def test_defaults_quoted_in_the_prose_are_the_declared_ones() -> None:
    numeric = {s.name: s for s in writer.DECLARED_SETTINGS if isinstance(s, Integer | Seconds)}
    checked, problems = 0, []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for quoted in QUOTED_DEFAULT.finditer(line):
                setting = numeric.get(quoted["name"])
                if setting is None:
                    continue
                value = float(quoted["number"].replace(",", "")) * UNITS[quoted["unit"]]
                checked += 1
                if value != setting.default:
                    where = f"{path.relative_to(ROOT)}:{number}"
                    problems.append(f"{where}: {quoted.group(0)!r}, but {setting.name} defaults to {setting.default:g}")
    assert problems == [], "\n".join(problems)
    assert checked >= 20, f"only {checked} quoted defaults found: has the pattern stopped matching the docs?"
