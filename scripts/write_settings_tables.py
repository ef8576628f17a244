"""Writes the settings tables of README.md and docs/gateway.md from the settings' declarations.

    python scripts/write_settings_tables.py          # rewrite the tables in place
    python scripts/write_settings_tables.py --check  # exit 1, with the rows that differ, if a table is stale

A table sits between `<!-- settings table: DEPLOYABLE ... -->` and `<!-- end of settings table -->`; everything
outside the markers is left as it is. The declarations (telemetry_events.envvars.Setting) are the one source of a
setting's default, range and meaning: `DECLARED` in telemetry_export/settings.py (the functions and the command line)
and in gateway_run/settings.py (the gateway). tests/test_settings_tables.py fails while a table differs from them.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway_run import settings as gateway_settings  # noqa: E402
from telemetry_events.envvars import Choice, Deployable, Integer, Seconds, Setting, Text  # noqa: E402
from telemetry_export import settings as functions_settings  # noqa: E402

DOCUMENTS = ("README.md", "docs/gateway.md")
DECLARED: dict[Deployable, tuple[Setting, ...]] = {
    Deployable.FUNCTIONS: functions_settings.DECLARED,
    Deployable.GATEWAY: gateway_settings.DECLARED,
}
DECLARED_SETTINGS = tuple(dict.fromkeys(setting for settings in DECLARED.values() for setting in settings))
HEADER = "| variable | default | meaning |\n|---|---|---|\n"
TABLE = re.compile(
    r"(?P<start><!-- settings table: (?P<deployable>\w+)[^>]*-->\n)"
    r"(?P<table>.*?)"
    r"(?P<end><!-- end of settings table -->)",
    re.DOTALL,
)
KIB = 1024


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,g}"


def _size(value: int) -> str:
    for unit, size in (("GiB", KIB**3), ("MiB", KIB**2), ("KiB", KIB)):
        if value >= size and value % size == 0:
            return f"{value // size} {unit}"
    return f"{value:,} bytes"


def duration(seconds: float) -> str:
    """A number of seconds as the readers accept it, in the largest unit that keeps it whole (`24h`, `30d`, `90s`)."""
    for unit, size, smallest in (("d", 86400, 2 * 86400), ("h", 3600, 3600), ("m", 60, 600)):
        if seconds >= smallest and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def default_text(setting: Setting) -> str:
    if setting.shown_default:
        return setting.shown_default
    value = setting.default
    if isinstance(setting, Seconds):
        return f"`{duration(value)}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(setting, Integer) and setting.unit == "bytes" and value % KIB == 0:
        return f"`{value}` ({_size(value)})"
    if isinstance(setting, Text) and not value:
        return "unset"
    return f"`{value}`"


def range_text(setting: Setting) -> str:
    """The values a setting accepts, as the tables add them to its meaning ("" when any value of its kind goes)."""
    if isinstance(setting, Choice):
        values = [f"`{value}`" for value in setting.allowed]
        return f"{', '.join(values[:-1])} or {values[-1]}"
    if isinstance(setting, Integer | Seconds):
        show: Callable[[Any], str] = (
            duration if isinstance(setting, Seconds) else _size if setting.unit == "bytes" else _number
        )
        low, high = setting.minimum, setting.maximum
        if low is not None and high is not None:
            return f"{show(low)} to {show(high)}"
        if low is not None:
            return f"at least {show(low)}"
        if high is not None:
            return f"at most {show(high)}"
    return ""


def row(setting: Setting) -> str:
    meaning = setting.meaning
    accepted = range_text(setting)
    if accepted:
        meaning = f"{meaning} ({accepted})"
    cells = (f"`{setting.name}`", default_text(setting), meaning)
    if any("|" in cell or "\n" in cell for cell in cells):
        raise ValueError(f"{setting.name}: a table cell cannot hold '|' or a line break")
    return f"| {' | '.join(cells)} |\n"


def table(deployable: Deployable) -> str:
    return HEADER + "".join(row(setting) for setting in DECLARED[deployable])


def tables_in(text: str) -> list[tuple[Deployable, str]]:
    """The (deployable, table text) of each marked table of a document, in order."""
    return [(Deployable(match["deployable"]), match["table"]) for match in TABLE.finditer(text)]


def rewritten(text: str) -> str:
    return TABLE.sub(lambda match: match["start"] + table(Deployable(match["deployable"])) + match["end"], text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is stale")
    args = parser.parse_args(argv)
    stale = []
    for name in DOCUMENTS:
        path = ROOT / name
        text = path.read_text(encoding="utf-8")
        if not tables_in(text):
            print(f"{name}: no settings table markers", file=sys.stderr)
            return 1
        new = rewritten(text)
        if new != text:
            stale.append(name)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    if stale:
        verb = "stale" if args.check else "rewritten"
        print(f"{verb}: {', '.join(stale)}", file=sys.stderr)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
