"""Peak memory (and CPU per event) of one exporter run over a 100,000-row and a 1,000,000-row backlog.

Usage: python -m benchmarks.export_memory [--small 100000] [--large 1000000] [--admin-url URL]

Each run is the real command line (`telemetry-export export`, one run as the function does)
in its own process, so its peak RSS is its own; the gateway is a scripted gRPC server that
acknowledges everything. Targets: <= 256 MiB on 1,000,000 rows, and no more than 1.2x the
peak on 100,000 rows: memory must not grow with the backlog. The exporter process' CPU (user +
system, from its rusage) is printed per exported event beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._database import benchmark_database
from benchmarks._queue_fill import fill_queue
from localdev.scripted_gateway import ScriptedGateway
from telemetry_export.store.connection import Connections, DatabaseSettings

CLI = str(Path(sys.executable).with_name("telemetry-export"))


def peak_rss_mib(url: str, gateway_url: str) -> tuple[float, dict, float, float]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "TELEMETRY_GATEWAY_ADDR": gateway_url,
        "TELEMETRY_INSTANCE_ID": "benchmark-instance",
        "TELEMETRY_EXPORT_FUNCTION_TIMEOUT": "3600",
        "TELEMETRY_EXPORT_DEADLINE_MARGIN": "60",
    }
    started = time.perf_counter()
    # /usr/bin/time would do the same; wait4's rusage needs no extra package.
    process = subprocess.Popen([CLI, "export"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    stdout = process.stdout.read().decode() if process.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"export failed: {process.stderr.read().decode() if process.stderr else ''}")
    return usage.ru_maxrss / 1024, json.loads(stdout), elapsed, usage.ru_utime + usage.ru_stime


def measure(admin_url: str | None, rows: int, gateway_url: str) -> tuple[float, dict, float, float]:
    with benchmark_database(admin_url) as url, Connections(DatabaseSettings(url=url)).connection() as conn:
        fill_queue(conn, rows)
        return peak_rss_mib(url, gateway_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--admin-url", help="admin URL of a Postgres server (default: a throwaway cluster)")
    args = parser.parse_args()
    gateway = ScriptedGateway(keep_ids=False).start()
    try:
        results = {rows: measure(args.admin_url, rows, gateway.url) for rows in (args.small, args.large)}
    finally:
        gateway.stop()
    for rows, (peak, summary, elapsed, cpu) in results.items():
        print(
            f"{rows:>9,} rows: peak RSS {peak:6.1f} MiB, exported {summary['exported']:,} in {elapsed:.1f} s "
            f"({summary['exported'] / elapsed:,.0f} rows/s, exporter CPU {cpu / max(summary['exported'], 1) * 1e6:.1f} "
            f"µs/event), remaining {summary['remaining']}"
        )
    small, large = results[args.small][0], results[args.large][0]
    print(
        f"peak on {args.large:,} / peak on {args.small:,}: {large / small:.2f} (target <= 1.2); "
        f"peak on {args.large:,}: {large:.1f} MiB (target <= 256)"
    )


if __name__ == "__main__":
    main()
