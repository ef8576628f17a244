"""The README's first command: the main job end to end on real local services."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from localdev.pubsub_emulator import EmulatorUnavailable, emulator_command
from localdev.recorded_vs_published import REMOVED, Pair, pairs, side_by_side

MARKER = "TELEMETRY_DEMO_TEST_RUN"


def _processes_marked(value: str) -> list[str]:
    """Processes whose environment carries MARKER=value: the demo and everything it started (they inherit it).

    Other engineers' services on the same machine do not carry it, so they never count.
    """
    needle = f"{MARKER}={value}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if needle in (proc / "environ").read_bytes().split(b"\0"):
                    found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue  # ended meanwhile, or not ours to read
    return found


def test_the_demo_publishes_every_recorded_event_shows_what_redaction_removed_and_stops_what_it_started():
    try:
        emulator_command("127.0.0.1:1")
    except EmulatorUnavailable as error:
        pytest.skip(str(error))
    run_id = uuid.uuid4().hex
    result = subprocess.run(
        [sys.executable, "-m", "localdev.demo", "--events", "300", "--show", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, MARKER: run_id},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    for expected in ("recorded     300", "exported     300", "published    300", "quarantined  0", "backlog      0"):
        assert expected in lines
    # The services table: every address starts in the same column, the longest name included.
    services = lines[lines.index("== starting services") + 1 : lines.index("== starting services") + 7]
    assert [line.split()[0] for line in services] == [
        "Postgres",
        "Pub/Sub",
        "gateway",
        "export_events",
        "cleanup_exported_events",
        "report_queue_metrics",
    ]
    assert len({re.search(r"\s{2}(postgresql|127|http)", line).start(1) for line in services}) == 1
    # Two events side by side: the first recorded, and one with an allowlisted key.
    shown = [line for line in lines if line.startswith("event ")]
    assert len(shown) == 2
    rows = {}
    for line in lines:
        if line.startswith("  ") and "  " in line.strip():
            column, *values = re.split(r"\s{2,}", line.strip())
            rows.setdefault(column, []).append(values)
    assert [values[1] for values in rows["argument.query"]] == [REMOVED, REMOVED]
    assert [values[1] for values in rows["url"]] == [REMOVED, REMOVED]
    assert [values[1] for values in rows["referrer"]] == [REMOVED, REMOVED]
    assert [values[0] == values[1] for values in rows["name"]] == [True, True]
    first_allowed, allowlisted = rows["argument.testField"]
    assert first_allowed[1] == REMOVED  # search.submit: not allowlisted
    assert allowlisted[1] == allowlisted[0] and allowlisted[0].startswith("allowed value")  # example.example
    assert _processes_marked(run_id) == []  # nothing the demo started is left running


RECORDED = {
    "event_id": "01a23392-5114-7281-b19b-b5059a427387",
    "name": "search.submit",
    "client": "VSCODE 1.30.0",
    "user_id": 3368,
    "anonymous_user_id": "anon-fa1c",
    "argument": {"query": "password=hunter2", "testField": "allowed value 0"},
    "public_argument": {"durationMs": 631.07, "legacyCount": 10.0, "telemetry.exportable": True},
    "feature_flags": {"new-search": "false"},
    "billing_product_category": "cody:core",
    "url": "https://sourcegraph.example.com/search?q=password=hunter2",
    "first_source_url": None,
    "last_source_url": None,
    "cohort_id": "cohort-3",
    "referrer": None,
    "device_session_id": None,
}
PUBLISHED = {
    "feature": "search",
    "action": "submit",
    "source": {"client": {"name": "VSCODE", "version": "1.30.0"}, "server": {"version": "6.1.0"}},
    "user": {"userId": "3368", "anonymousUserId": "anon-fa1c"},
    "parameters": {
        "metadata": {"durationMs": 631.07, "legacyCount": 10},
        "privateMetadata": {"testField": "allowed value 0"},
        "billingMetadata": {"product": "cody", "category": "core"},
    },
    "featureFlags": {"flags": {"new-search": "false"}},
    "interaction": {"traceId": "a48e"},
}


def test_each_recorded_column_is_paired_with_the_published_field_it_came_from():
    assert pairs(RECORDED, PUBLISHED) == [
        Pair("name", "search.submit", "search.submit"),
        Pair("client", "VSCODE 1.30.0", "VSCODE 1.30.0"),
        Pair("user_id", "3368", "3368"),
        Pair("anonymous_user_id", "anon-fa1c", "anon-fa1c"),
        Pair("argument.query", "password=hunter2", REMOVED),
        Pair("argument.testField", "allowed value 0", "allowed value 0"),
        Pair("public_argument.durationMs", "631.07", "631.07"),
        Pair("public_argument.legacyCount", "10", "10"),
        Pair("feature_flags.new-search", "false", "false"),
        Pair("billing_product_category", "cody:core", "cody:core"),
        Pair("url", "https://sourcegraph.example.com/search?q=password=hunter2", REMOVED),
        Pair("cohort_id", "cohort-3", REMOVED),
    ]


def test_an_event_without_user_client_or_billing_published_shows_them_removed():
    published = {"feature": "search", "action": "submit", "parameters": {}}

    removed = {pair.column for pair in pairs(RECORDED, published) if pair.published == REMOVED}

    assert removed == {
        "client",
        "user_id",
        "anonymous_user_id",
        "argument.query",
        "argument.testField",
        "public_argument.durationMs",
        "public_argument.legacyCount",
        "feature_flags.new-search",
        "billing_product_category",
        "url",
        "cohort_id",
    }


def test_side_by_side_aligns_three_columns_and_cuts_long_values():
    text = side_by_side("0192-id", [Pair("url", "x" * 50, REMOVED), Pair("name", "a.b", "a.b")], width=10)

    assert text.splitlines() == [
        "event 0192-id",
        "  event_logs column  recorded (event_logs, unredacted)  published (Pub/Sub)",
        "  url                xxxxxxxxx…                         REMOVED",
        "  name               a.b                                a.b",
    ]
