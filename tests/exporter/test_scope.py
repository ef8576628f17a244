"""Narrowing the export scope holds back the backlog: rows outside today's scope are withheld, never sent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from localdev.scripted_gateway import ScriptedGateway
from telemetry_events.export_mode import ExportMode, ExportScope
from telemetry_events.redaction import policy_from
from telemetry_export.exporter import run_export
from telemetry_export.gateway_client import open_channel, parse_gateway_addr
from telemetry_export.settings import Settings

from .conftest import exporter_settings, queue_states, record_samples

CLI = str(Path(sys.executable).with_name("telemetry-export"))
LISTED = ExportScope(ExportMode.LISTED_FEATURES, frozenset({"search", "blob"}))
LISTED_ENV = {"TELEMETRY_EXPORT_MODE": "listed", "TELEMETRY_EXPORT_FEATURES": "search,blob"}


def _cli(database_url: str, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    full_env = {**inherited, "DATABASE_URL": database_url, **env}
    return subprocess.run([CLI, *argv], env=full_env, capture_output=True, text=True, timeout=120)


def _export(conn, gateway: ScriptedGateway | None, scope: ExportScope):
    url = gateway.url if gateway else "http://127.0.0.1:9"
    target = parse_gateway_addr(url)
    opened = []

    def channel():
        opened.append(url)
        return open_channel(target)

    report = run_export(conn, exporter_settings(url), policy_from(), channel, scope=scope)
    return report, opened


def _features(conn, where: str) -> set[str]:
    from telemetry_events import pb

    cursor = conn.cursor()
    cursor.execute(f"SELECT payload_pb FROM telemetry_events_export_queue WHERE {where}")  # noqa: S608 - fixed
    found = {pb.Event.FromString(bytes(row[0])).feature for row in cursor.fetchall()}
    conn.commit()
    return found


def test_all_then_listed_sends_only_listed_features_and_withholds_the_rest(conn, database_url):
    ids = record_samples(conn, 400, seed=71)  # recorded under TELEMETRY_EXPORT_MODE=all
    preview = _cli(database_url, "preview", "--limit", "16", **LISTED_ENV)
    assert preview.returncode == 0, preview.stderr
    lines = [json.loads(line) for line in preview.stdout.splitlines()]
    assert {line["event"]["feature"] for line in lines if "would_withhold" not in line} == {"search", "blob"}
    held = [line for line in lines if "would_withhold" in line]
    assert held and all(line["would_withhold"].startswith("outside the export scope: feature ") for line in held)
    assert all(line["event"] is None for line in held)  # nothing of a withheld row is shown as if it would leave

    gateway = ScriptedGateway(keep_events=True).start()
    try:
        report, _ = _export(conn, gateway, LISTED)
    finally:
        gateway.stop()
    sent = {event.feature for stream in gateway.streams for event in stream.events}
    assert sent == {"search", "blob"}
    assert report.exported == 150 and report.withheld == 250 and report.remaining == 0  # 3 of 8 features listed
    assert report.stopped_because == "backlog empty" and report.failed == 0
    assert _features(conn, "withheld") == _features(conn, "TRUE") - {"search", "blob"}
    assert queue_states(conn) == {"exported": 150, "quarantined": 250, "waiting": 0, "leased": 0}

    status = _cli(database_url, "queue", "status", "--json")
    figures = json.loads(status.stdout)
    assert (figures["queue_backlog"], figures["queue_quarantined"], figures["queue_withheld"]) == (0, 0, 250)
    table = _cli(database_url, "queue", "status").stdout
    [withheld_line] = [line.split() for line in table.splitlines() if "withheld" in line]
    assert withheld_line == ["withheld", "(outside", "the", "export", "scope)", "250"]
    listing = [
        json.loads(line) for line in _cli(database_url, "quarantine", "list", "--limit", "500").stdout.splitlines()
    ]
    assert len(listing) == 250 and all(row["withheld"] for row in listing)
    assert {row["reason"] for row in listing} == {
        f"outside the export scope: feature {f!r} is not in TELEMETRY_EXPORT_FEATURES"
        for f in _features(conn, "withheld")
    }

    # Widened again: withheld rows stay held until someone requeues them; then today's scope decides.
    requeue = _cli(database_url, "quarantine", "requeue", "--withheld")
    assert requeue.stdout.strip() == "requeued 250 row(s)"
    again = ScriptedGateway().start()
    try:
        report, _ = _export(conn, again, ExportScope())
    finally:
        again.stop()
    assert report.exported == 250 and report.withheld == 0
    assert len(again.received_ids()) == 250 and set(again.received_ids()) < set(ids)


def test_all_then_disabled_sends_nothing_and_says_so(conn, database_url):
    record_samples(conn, 300, seed=72)
    report, opened = _export(conn, None, Settings.from_env({"TELEMETRY_EXPORT_MODE": "disabled"}).export_scope)
    assert opened == []  # not even a connection to the gateway
    assert report.stopped_because == "export disabled: TELEMETRY_EXPORT_MODE=disabled, nothing sent"
    assert (report.exported, report.withheld, report.remaining, report.failed) == (0, 300, 0, 0)
    assert queue_states(conn) == {"exported": 0, "quarantined": 300, "waiting": 0, "leased": 0}
    cursor = conn.cursor()
    cursor.execute("SELECT DISTINCT withheld, quarantine_reason FROM telemetry_events_export_queue")
    assert [list(row) for row in cursor.fetchall()] == [[True, "export disabled: TELEMETRY_EXPORT_MODE=disabled"]]
    conn.commit()
    # Withheld rows are deleted by cleanup once the quarantine retention has passed.
    cleanup = _cli(database_url, "cleanup", TELEMETRY_CLEANUP_QUARANTINE_RETENTION="0")
    assert cleanup.returncode == 0, cleanup.stderr
    assert queue_states(conn) == {"exported": 0, "quarantined": 0, "waiting": 0, "leased": 0}

    again = _export(conn, None, ExportScope(ExportMode.DISABLED))[0]
    assert again.stopped_because == "export disabled: TELEMETRY_EXPORT_MODE=disabled, nothing sent"
