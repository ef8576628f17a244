"""`telemetry-export db migrate` and `telemetry-export record`, driven as a user would."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from telemetry_events import pb
from telemetry_events.export_mode import ExportScope
from telemetry_events.protojson import message_to_json
from telemetry_events.redaction import policy_from
from telemetry_export.event_files import BLOCK_LINES
from telemetry_export.recording import record_events
from telemetry_export.sample_events import sample_events


def _count(conn, table: str) -> int:
    cursor = conn.cursor()
    cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - table names are the test's own constants
    return cursor.fetchone()[0]


def test_migrate_twice_reports_the_second_as_a_no_op(cli):
    status, out, _ = cli("db", "migrate")
    assert status == 0 and out.startswith("schema up to date (2 migration(s) already applied)")


def test_record_a_jsonl_file_filling_in_ids_and_timestamps(cli, conn, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"feature": "search", "action": "submit", "parameters": {"metadata": {"count": 2}}}\n'
        "\n"
        '{"id": "0194f3a2-7c1e-7b2a-9d3e-5f6a7b8c9d0e", "timestamp": "2026-01-02T03:04:05Z",'
        ' "feature": "example", "action": "example",'
        ' "parameters": {"privateMetadata": {"testField": "ok", "secret": "no"}},'
        ' "marketingTracking": {"url": "https://x.example"}}\n'
    )
    status, out, err = cli("record", str(path))
    assert (status, err) == (0, "")
    assert out == "recorded 2 event(s), queued 2 for export\n"
    cursor = conn.cursor()
    cursor.execute("SELECT id::text, timestamp IS NOT NULL, payload_pb FROM telemetry_events_export_queue")
    rows = {row[0]: pb.Event.FromString(row[2]) for row in cursor.fetchall()}
    given = rows.pop("0194f3a2-7c1e-7b2a-9d3e-5f6a7b8c9d0e")
    assert dict(given.parameters.private_metadata) == {"testField": "ok"}
    assert not given.HasField("marketing_tracking")
    [filled] = rows.values()
    assert filled.HasField("timestamp") and filled.parameters.metadata["count"] == 2


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "events.jsonl:3: not JSON"),
        ("[1, 2]", "events.jsonl:3: expected a JSON object (an Event), got list"),
        ('{"feature": "search", "action": "submit", "colour": "red"}', "events.jsonl:3: not an Event"),
        ('{"feature": "Search", "action": "submit"}', "events.jsonl:3: feature 'Search' must be"),
        ('{"id": "nope", "feature": "search", "action": "submit"}', "events.jsonl:3: id 'nope' is not a UUID"),
    ],
)
def test_a_bad_line_fails_the_whole_file_naming_its_line(cli, conn, tmp_path, line, reason):
    good = '{"feature": "search", "action": "submit"}'
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([good, good, line, good]) + "\n")
    status, out, err = cli("record", str(path))
    assert status == 2 and out == ""
    assert err.startswith(f"telemetry-export: error: {tmp_path}/{reason}")
    assert err.rstrip().endswith("nothing was recorded")
    assert _count(conn, "event_logs") == 0 and _count(conn, "telemetry_events_export_queue") == 0


def test_record_from_stdin_reports_duplicates(cli, conn):
    line = json.dumps({"id": "0194f3a2-7c1e-7b2a-9d3e-5f6a7b8c9d0e", "feature": "search", "action": "submit"})
    status, out, _ = cli("record", "-", stdin=f"{line}\n{line}\n")
    assert status == 0
    assert out.splitlines() == [
        "recorded 1 event(s), queued 1 for export",
        "skipped 1 duplicate event ID(s): 0194f3a2-7c1e-7b2a-9d3e-5f6a7b8c9d0e",
    ]


def test_record_samples_carry_sensitive_fields_that_never_reach_the_queue(cli, conn):
    status, out, _ = cli("record", "--sample", "40", "--seed", "9")
    assert status == 0 and out == "recorded 40 event(s), queued 40 for export\n"
    cursor = conn.cursor()
    cursor.execute("SELECT count(*) FROM event_logs WHERE argument ? 'query' AND cohort_id IS NOT NULL")
    assert cursor.fetchone()[0] == 40  # the local view has the sensitive fields...
    cursor.execute("SELECT payload_pb FROM telemetry_events_export_queue")
    for (payload,) in cursor.fetchall():
        event = pb.Event.FromString(payload)  # ...the queue does not
        assert not event.HasField("marketing_tracking")
        assert set(event.parameters.private_metadata) <= {"testField"}


def test_missing_file_and_unreachable_database_are_one_line_errors(cli, monkeypatch):
    status, _, err = cli("record", "/nonexistent/events.jsonl")
    assert (
        status == 2
        and err == "telemetry-export: error: cannot read /nonexistent/events.jsonl: No such file or directory\n"
    )
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/telemetry")
    status, _, err = cli("record", "--sample", "1")
    assert status == 2 and err.startswith("telemetry-export: error: cannot connect to 127.0.0.1:1/telemetry")
    assert len(err.splitlines()) == 1


def test_bad_settings_are_one_line_errors_naming_the_variable(cli, monkeypatch):
    monkeypatch.setenv("TELEMETRY_EXPORT_MODE", "sometimes")
    status, _, err = cli("record", "--sample", "1")
    assert status == 2
    assert err == "telemetry-export: error: TELEMETRY_EXPORT_MODE='sometimes' must be one of: all, listed, disabled\n"


def test_the_console_script_is_installed_and_documents_itself():
    executable = shutil.which("telemetry-export") or str(
        __import__("pathlib").Path(sys.executable).with_name("telemetry-export")
    )
    result = subprocess.run([executable, "record", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "--sample N" in result.stdout and "JSON Lines" in result.stdout


def test_a_line_nested_deeper_than_the_gateway_decodes_is_refused_naming_its_line(cli, conn, tmp_path):
    nested: dict = {"leaf": "x"}
    for _ in range(32):
        nested = {"deeper": nested}
    path = tmp_path / "events.jsonl"
    good = '{"feature": "search", "action": "submit"}'
    deep = json.dumps({"feature": "search", "action": "submit", "parameters": {"privateMetadata": nested}})
    path.write_text(f"{good}\n{deep}\n")
    status, out, err = cli("record", str(path))
    assert status == 2 and out == ""
    assert err.startswith(f"telemetry-export: error: {path}:2: parameters.private_metadata nests more than 97")
    assert _count(conn, "event_logs") == 0


EXACT_TIMESTAMPS = [
    "0001-01-01T00:00:00Z",
    "0012-03-04T05:06:07.123456Z",
    "0070-01-01T00:00:00Z",
    "0099-12-31T23:59:59.5Z",
    "1969-12-31T23:59:59.999999Z",
    "9999-12-31T23:59:59.999999Z",
]


def test_timestamps_of_every_year_are_stored_exactly(cli, conn, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(
        "".join(
            json.dumps({"feature": "search", "action": "submit", "timestamp": stamp}) + "\n"
            for stamp in EXACT_TIMESTAMPS
        )
    )
    status, out, err = cli("record", str(path))
    assert (status, err) == (0, "")
    cursor = conn.cursor()
    for table in ("event_logs", "telemetry_events_export_queue"):
        cursor.execute(
            f"SELECT to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') FROM {table} ORDER BY 1"  # noqa: S608
        )
        stored = [row[0] for row in cursor.fetchall()]
        expected = [f"{stamp[:19]}.{(stamp[20:-1] + '000000')[:6]}" for stamp in EXACT_TIMESTAMPS]
        assert stored == sorted(expected), table


def test_a_timestamp_beyond_year_9999_is_refused_naming_its_line(cli, conn, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"feature": "search", "action": "submit"}\n'
        '{"feature": "search", "action": "submit", "timestamp": "10000-01-01T00:00:00Z"}\n'
    )
    status, out, err = cli("record", str(path))
    assert status == 2 and out == ""
    assert err.startswith(f"telemetry-export: error: {path}:2: not an Event")
    assert _count(conn, "event_logs") == 0


def test_invalid_utf8_is_reported_with_its_line(cli, conn, tmp_path):
    path = tmp_path / "events.jsonl"
    bad = b'{"feature": "search", "action": "submit", "parameters": {"privateMetadata": {"q": "\xff\xfe"}}}'
    path.write_bytes(b'{"feature": "search", "action": "submit"}\n' + bad + b"\n")
    status, out, err = cli("record", str(path))
    assert status == 2 and out == ""
    at = bad.index(b"\xff") + 1
    assert err.startswith(f"telemetry-export: error: {path}:2: not UTF-8: invalid start byte at byte {at} of the line")
    assert err.rstrip().endswith("nothing was recorded")
    assert _count(conn, "event_logs") == 0


def _tables_as_text(conn) -> tuple[list, list]:
    cursor = conn.cursor()
    cursor.execute(
        "SELECT event_id::text, timestamp::text, name, url, user_id, anonymous_user_id, source, argument::text,"
        " public_argument::text, version, feature_flags::text, cohort_id, first_source_url, last_source_url,"
        " referrer, device_session_id, billing_product_category, client FROM event_logs ORDER BY event_id"
    )
    logs = [tuple(row) for row in cursor.fetchall()]
    cursor.execute("SELECT id::text, timestamp::text, payload_pb FROM telemetry_events_export_queue ORDER BY id")
    queue = [(i, t, pb.Event.FromString(p)) for i, t, p in cursor.fetchall()]
    cursor.execute("TRUNCATE event_logs, telemetry_events_export_queue")
    conn.commit()
    return logs, queue


def test_a_file_and_the_python_api_record_the_same_rows(cli, conn, tmp_path):
    events = list(sample_events(300, seed=12))
    events[5].source.client.name = "tab\there, newline\nand NUL\x00"
    events[6].parameters.private_metadata.update({"nested": {"list": [1, "two", None, True]}, "k\x00": "v"})
    events[7].id = events[7].id.upper()  # recorded under its canonical spelling either way
    events[8].parameters.metadata["nan"] = float("nan")  # protojson writes "NaN": this line takes json_format
    path = tmp_path / "events.jsonl"
    path.write_text("".join(message_to_json(event) + "\n" for event in events))
    status, out, err = cli("record", str(path))
    assert (status, err) == (0, "")
    from_file = _tables_as_text(conn)
    record_events(conn, events, policy_from(), ExportScope())
    from_api = _tables_as_text(conn)
    assert len(from_file[0]) == 300 and len(from_file[1]) == 300
    assert from_file == from_api


def _lines(events) -> str:
    return "".join(message_to_json(event) + "\n" for event in events)


def test_reader_processes_record_a_large_file_as_one_process_would(cli, conn, tmp_path):
    # Nine blocks for two readers, more than they are given at once. The line before last repeats
    # line 10's ID with other content: the first in the file's order is recorded, whichever process
    # prepared it.
    count = 9 * BLOCK_LINES
    events = list(sample_events(count, seed=21))
    events[-2].id = events[9].id
    events[-2].feature = "repeated"
    path = tmp_path / "events.jsonl"
    path.write_text(_lines(events))

    status, out, err = cli("record", str(path), "--jobs", "2")
    assert status == 0, err
    assert out.splitlines() == [
        f"recorded {count - 1:,} event(s), queued {count - 1:,} for export",
        f"skipped 1 duplicate event ID(s): {events[9].id}",
    ]
    in_parallel = _tables_as_text(conn)
    assert cli("record", str(path), "--jobs", "0")[0] == 0
    assert in_parallel == _tables_as_text(conn)
    names = {row[0]: row[2] for row in in_parallel[0]}
    assert names[events[9].id] == f"{events[9].feature}.{events[9].action}"


@pytest.mark.parametrize("bad_line", [1, BLOCK_LINES, BLOCK_LINES + 1, 4 * BLOCK_LINES + 101])
def test_a_bad_line_read_by_a_reader_process_is_named_by_its_line_in_the_file(cli, conn, tmp_path, bad_line):
    events = list(sample_events(9 * BLOCK_LINES // 2, seed=22))
    lines = _lines(events).splitlines()
    lines[bad_line - 1] = '{"feature": "search", "action": "Submit"}'
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    status, out, err = cli("record", str(path), "--jobs", "2")
    assert status == 2 and out == ""
    assert err.startswith(f"telemetry-export: error: {path}:{bad_line}: action 'Submit' must be"), err
    assert err.rstrip().endswith("nothing was recorded")
    assert _count(conn, "event_logs") == 0 and _count(conn, "telemetry_events_export_queue") == 0


def test_standard_input_is_read_by_reader_processes_too(cli, conn):
    events = list(sample_events(2 * BLOCK_LINES + 500, seed=24))
    status, out, err = cli("record", "-", "--jobs", "2", stdin=_lines(events))
    assert status == 0, err
    assert out.startswith(f"recorded {len(events):,} event(s), queued {len(events):,}")
    assert _count(conn, "event_logs") == len(events)

    lines = _lines(sample_events(2 * BLOCK_LINES + 500, seed=25)).splitlines()
    lines[2 * BLOCK_LINES] = "not json"
    status, out, err = cli("record", "-", "--jobs", "2", stdin="\n".join(lines))
    assert status == 2 and err.startswith(f"telemetry-export: error: <stdin>:{2 * BLOCK_LINES + 1}: not JSON"), err
    assert _count(conn, "event_logs") == len(events)  # the first file's rows, nothing of the second


def test_jobs_must_be_a_whole_number_of_zero_or_more(cli, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        cli("record", str(tmp_path / "events.jsonl"), "--jobs", "-1")
    assert exit_info.value.code == 2


def _reader_processes(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(child) for child in children if _is_reader(int(child))]


def _is_reader(pid: int) -> bool:
    return b"spawn_main" in _cmdline(pid)


def _start_record(database_url: str, path: Path) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url}
    command = [str(Path(sys.executable).with_name("telemetry-export")), "record", str(path), "--jobs", "2"]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _wait_for_readers(process: subprocess.Popen) -> list[int]:
    deadline = time.monotonic() + 30
    while len(readers := _reader_processes(process.pid)) < 2 and process.poll() is None:
        assert time.monotonic() < deadline, "the reader processes did not start"
        time.sleep(0.01)
    assert len(readers) == 2, "the command ended before its readers could be seen"
    return readers


def _ended(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(_is_reader(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _large_file(tmp_path: Path, seed: int) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text(_lines(sample_events(60 * BLOCK_LINES, seed=seed)))
    return path


def test_a_reader_process_that_dies_fails_the_file_at_once_and_records_nothing(database_url, conn, tmp_path):
    path = _large_file(tmp_path, seed=23)
    process = _start_record(database_url, path)
    try:
        readers = _wait_for_readers(process)
        os.kill(readers[0], signal.SIGKILL)
        killed = time.monotonic()
        out, err = process.communicate(timeout=120)
        # A liveness bound, not a speed target: the pool executor this replaced hung here for a minute.
        assert time.monotonic() - killed < 20
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 2 and out == ""
    assert err.startswith(f"telemetry-export: error: a process reading {path} died"), err
    assert err.rstrip().endswith("nothing was recorded")
    assert _ended(readers, 10)
    assert _count(conn, "event_logs") == 0 and _count(conn, "telemetry_events_export_queue") == 0


def test_ctrl_c_ends_the_command_and_its_readers_with_one_line_and_records_nothing(database_url, conn, tmp_path):
    process = _start_record(database_url, _large_file(tmp_path, seed=26))
    try:
        readers = _wait_for_readers(process)
        os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole foreground group
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130 and out == ""
    assert err.strip() == "telemetry-export: interrupted", err  # no reader's traceback beside it
    assert _ended(readers, 10)
    assert _count(conn, "event_logs") == 0


def test_readers_of_a_killed_command_exit_on_their_own(database_url, conn, tmp_path):
    process = _start_record(database_url, _large_file(tmp_path, seed=27))
    try:
        readers = _wait_for_readers(process)
        process.kill()  # no chance to end its readers
        process.communicate(timeout=60)
        assert _ended(readers, 20), "a reader outlived its command"
    finally:
        for pid in _reader_processes(process.pid):
            os.kill(pid, signal.SIGKILL)
    assert _count(conn, "event_logs") == 0


@pytest.mark.parametrize(("usable", "readers"), [(1, 1), (2, 2), (4, 4), (64, 4)])
def test_readers_by_default_one_per_usable_cpu_at_most_four(monkeypatch, usable, readers):
    from telemetry_export.cli import record

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(usable)))
    assert record._default_readers() == readers
