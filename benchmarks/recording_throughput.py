"""Recording throughput against Postgres writing the very same rows by COPY alone, measured in one run.

Usage: python -m benchmarks.recording_throughput [--events 100000] [--rounds 3] [--admin-url URL]
       python -m benchmarks.recording_throughput --memory [--small 100000] [--large 1000000]

Each round records the same realistic events three ways, each into empty tables with every
index in place, in one transaction:
- the Python API, `record_events` over Event objects already in memory;
- the command line, `telemetry-export record FILE.jsonl`, a process of its own reading the
  events as protojson lines (process start included), with its default reader processes
  (`--compare-jobs` also runs it with `--jobs 0`);
- the baseline: the rows recording wrote to both tables, dumped once with COPY TO and written
  again by COPY FROM alone, in chunks of the same size. It is what Postgres needs for these
  exact rows (jsonb parsing and index upkeep included), with no Python work at all.
Ratios are baseline time / path time (medians). Targets: CLI >= 0.4, Python API >= 0.5.

`--memory` instead measures the command line's peak RSS on a file of `--small` events and one
of `--large` events (fresh databases): memory must stay flat in the file's size, the large
peak at most 1.2 x the small one.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from benchmarks._database import benchmark_database
from telemetry_events import pb
from telemetry_events.export_mode import ExportScope
from telemetry_events.protojson import message_to_json
from telemetry_events.redaction import policy_from
from telemetry_export import recording
from telemetry_export.recording import DEFAULT_CHUNK_SIZE, record_events
from telemetry_export.sample_events import sample_events
from telemetry_export.store.connection import Connections, DatabaseSettings

CLI = str(Path(sys.executable).with_name("telemetry-export"))
# Every column recording writes (event_logs.id is the table's own sequence).
TABLES = {
    "event_logs": (
        "event_id, timestamp, name, url, user_id, anonymous_user_id, source, argument, public_argument, version,"
        " feature_flags, cohort_id, first_source_url, last_source_url, referrer, device_session_id,"
        " billing_product_category, client"
    ),
    "telemetry_events_export_queue": "id, timestamp, payload_pb",
}
_TRUNCATE = "TRUNCATE telemetry_events_export_queue, event_logs"


def write_jsonl(events: Iterable[pb.Event], path: Path) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for event in events:
            handle.write(message_to_json(event))
            handle.write("\n")


def dump_tables(conn) -> dict[str, list[bytes]]:
    """The rows of both tables as COPY text lines, as recording wrote them."""
    dumps = {}
    cursor = conn.cursor()
    for table, columns in TABLES.items():
        out = io.BytesIO()
        cursor.execute(f"COPY {table} ({columns}) TO STDOUT", stream=out)
        dumps[table] = out.getvalue().splitlines(keepends=True)
    conn.commit()
    return dumps


def copy_baseline(conn, dumps: dict[str, list[bytes]]) -> float:
    cursor = conn.cursor()
    started = time.perf_counter()
    logs, queue = dumps["event_logs"], dumps["telemetry_events_export_queue"]
    for start in range(0, len(logs), DEFAULT_CHUNK_SIZE):
        for table, lines in (("event_logs", logs), ("telemetry_events_export_queue", queue)):
            chunk = b"".join(lines[start : start + DEFAULT_CHUNK_SIZE])
            cursor.execute(f"COPY {table} ({TABLES[table]}) FROM STDIN", stream=io.BytesIO(chunk))
    conn.commit()
    return time.perf_counter() - started


def run_cli(url: str, path: Path, *options: str) -> tuple[float, float, str]:
    """Runs `telemetry-export record path [options]`; returns (seconds, peak RSS in MiB, its output)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TELEMETRY_")}
    env["DATABASE_URL"] = url
    started = time.perf_counter()
    process = subprocess.Popen(
        [CLI, "record", str(path), *options], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)  # the child's own peak RSS, no extra package
    elapsed = time.perf_counter() - started
    out = process.stdout.read().decode() if process.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"record failed: {process.stderr.read().decode() if process.stderr else ''}")
    return elapsed, usage.ru_maxrss / 1024, out


def record_without_overlap(conn, events, policy, scope):
    """record_events with each chunk written before the next is prepared: the writer thread measured."""

    class WriteInline(recording._ChunkWriter):
        def __enter__(self):
            return self

        def write(self, chunk):
            recording._write_chunk(self._cursor, chunk, self._result)
            if self._on_chunk is not None:
                self._on_chunk(self._result)

        def __exit__(self, kind, error, traceback):
            return None

    threaded = recording._ChunkWriter
    recording._ChunkWriter = WriteInline
    try:
        return record_events(conn, events, policy, scope)
    finally:
        recording._ChunkWriter = threaded


def count(conn, table: str) -> int:
    cursor = conn.cursor()
    cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - the benchmark's own table names
    value = cursor.fetchone()[0]
    conn.commit()
    return value


def truncate(conn) -> None:
    conn.cursor().execute(_TRUNCATE)
    conn.commit()


def throughput(args: argparse.Namespace) -> None:
    policy, scope = policy_from(), ExportScope()
    events = list(sample_events(args.events, seed=1))
    payload_bytes = sum(len(policy.redacted_bytes(e)) for e in events)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "events.jsonl"
        write_jsonl(events, path)
        file_bytes = path.stat().st_size
        with benchmark_database(args.admin_url) as url, Connections(DatabaseSettings(url=url)).connection() as conn:
            api_times, cli_times, copy_times, inline_times, one_process_times, dumps = [], [], [], [], [], None
            for _ in range(args.rounds):
                if args.compare_overlap:
                    truncate(conn)
                    started = time.perf_counter()
                    record_without_overlap(conn, events, policy, scope)
                    inline_times.append(time.perf_counter() - started)
                truncate(conn)
                started = time.perf_counter()
                result = record_events(conn, events, policy, scope)
                api_times.append(time.perf_counter() - started)
                assert result.recorded == args.events and result.queued == args.events, result
                if dumps is None:
                    dumps = dump_tables(conn)
                truncate(conn)
                copy_times.append(copy_baseline(conn, dumps))
                assert count(conn, "event_logs") == args.events
                truncate(conn)
                elapsed, _, out = run_cli(url, path)
                cli_times.append(elapsed)
                assert out.startswith(f"recorded {args.events:,} event(s), queued {args.events:,}"), out
                if args.compare_jobs:
                    truncate(conn)
                    one_process_times.append(run_cli(url, path, "--jobs", "0")[0])
    api, cli, baseline = (statistics.median(t) for t in (api_times, cli_times, copy_times))
    n = args.events
    print(
        f"events: {n:,} (payload {payload_bytes / n:.0f} bytes, JSONL line {file_bytes / n:.0f} bytes on average),"
        f" rounds: {args.rounds}, load average at the end: {os.getloadavg()[0]:.2f}"
    )
    print(f"baseline COPY:  {n / baseline:>9,.0f} events/s (median {baseline:.2f} s; the same rows, both tables)")
    print(f"Python API:     {n / api:>9,.0f} events/s (median {api:.2f} s)  ratio {baseline / api:.2f} (target >= 0.5)")
    print(f"CLI from JSONL: {n / cli:>9,.0f} events/s (median {cli:.2f} s)  ratio {baseline / cli:.2f} (target >= 0.4)")
    if one_process_times:
        alone = statistics.median(one_process_times)
        print(
            f"CLI, --jobs 0:  {n / alone:>9,.0f} events/s (median {alone:.2f} s)  ratio {baseline / alone:.2f}:"
            f" reader processes gain {alone / cli:.2f}x"
        )
    if inline_times:
        inline = statistics.median(inline_times)
        print(
            f"Python API without overlap: {n / inline:>9,.0f} events/s (median {inline:.2f} s)  ratio"
            f" {baseline / inline:.2f}: the writer thread gains {inline / api:.2f}x"
        )


def peak_memory(args: argparse.Namespace) -> None:
    peaks = {}
    with tempfile.TemporaryDirectory() as directory:
        for size in (args.small, args.large):
            path = Path(directory) / f"events-{size}.jsonl"
            write_jsonl(sample_events(size, seed=2), path)  # a generator: the file is never in memory
            with benchmark_database(args.admin_url) as url:
                elapsed, peaks[size], out = run_cli(url, path)
            path.unlink()
            print(f"record {size:>9,} events: peak RSS {peaks[size]:6.1f} MiB ({size / elapsed:,.0f} events/s)")
    ratio = peaks[args.large] / peaks[args.small]
    print(f"peak memory {args.large:,} / {args.small:,} events: {ratio:.2f} (target <= 1.2)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory", action="store_true", help="measure the CLI's peak memory instead")
    parser.add_argument(
        "--compare-overlap", action="store_true", help="also record through the API with each chunk written inline"
    )
    parser.add_argument(
        "--compare-jobs", action="store_true", help="also run the command line with --jobs 0 (no reader processes)"
    )
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--admin-url", help="admin URL of a Postgres server (default: a throwaway cluster)")
    args = parser.parse_args()
    if args.memory:
        peak_memory(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()
