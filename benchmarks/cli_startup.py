"""What a command line run and the function's cold start cost before any work: CPU and heavy imports.

Usage: python -m benchmarks.cli_startup [--runs 5] [--rows 100] [--admin-url URL]

Each command runs in its own process, several times; its CPU (user + system) is read from
`/proc/PID/stat` once it has exited and before it is reaped, and `python -c pass` measured in
the same run is the baseline. For each command the heavy packages it loaded are listed (from
`sys.modules` at exit). Its import cost is the CPU of a process that imports exactly the modules
the command had loaded, in the same order, and nothing else; `-X importtime`'s total (wall time,
so inflated on a loaded machine) is printed beside it.

Commands: `--help`, `queue status`, `export` (one run of `--rows` rows through a scripted
gateway over plaintext, as locally), and the export function's cold start (`import main`
after functions-framework, which the runtime loads anyway).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks._database import benchmark_database
from benchmarks._queue_fill import fill_queue
from localdev.scripted_gateway import ScriptedGateway
from telemetry_export.store.connection import Connections, DatabaseSettings

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("telemetry-export"))
HEAVY = (
    "grpc",
    "google.auth",
    "google.cloud.pubsub_v1",
    "google.cloud.monitoring_v3",
    "google.cloud.sql",
    "google.protobuf",
    "functions_framework",
    "pg8000",
    "cryptography",
    "telemetry_events.telemetrygateway",
)
# Runs the command line in-process and, at exit, prints which of HEAVY it loaded and every module it loaded.
_CLI_WITH_MODULES = """
import atexit, sys
def _loaded():
    heavy = {heavy}
    print("LOADED " + ",".join(h for h in heavy if h in sys.modules), file=sys.stderr)
    print("MODULES " + ",".join(sys.modules), file=sys.stderr)
atexit.register(_loaded)
from telemetry_export.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
_COLD_START = """
import sys
import functions_framework, flask
before = set(sys.modules)
sys.path.insert(0, {functions!r})
import main
heavy = {heavy}
print("LOADED " + ",".join(h for h in heavy if h in sys.modules and h not in before), file=sys.stderr)
print("MODULES " + ",".join(sys.modules), file=sys.stderr)
"""
# Imports the given modules in order, as the command did; modules that only exist in a running program
# (__main__, say) fail and are skipped.
_IMPORT_ONLY = """
import importlib, sys
sys.path.insert(0, {functions!r})
for name in {modules!r}:
    if name not in sys.modules:
        try:
            importlib.import_module(name)
        except Exception:
            pass
"""
_BASELINE = "pass"
_FRAMEWORK_ONLY = "import functions_framework, flask"


def cpu_seconds(argv: list[str], env: dict[str, str]) -> tuple[float, str, int]:
    """Runs argv; returns its CPU seconds read from /proc before reaping it, its stderr, and its status."""
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    stderr = process.stderr.read()  # until the process closes it; it stays a zombie until reaped below
    process.stderr.close()
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
    with open(f"/proc/{process.pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    status = process.wait()
    return cpu, stderr.decode(), status


def import_ms(argv: list[str], env: dict[str, str]) -> float:
    """Milliseconds importing, from -X importtime (the sum of the top-level imports' cumulative times)."""
    process = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    total = 0
    for line in process.stderr.decode().splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = line.split(":", 1)[1].split("|")
            if not name.startswith(" " * 2):  # top level: one space after the bar
                total += int(cumulative)
    return total / 1000


def measure(label: str, argv: list[str], env: dict[str, str], runs: int, baseline: float, before=lambda: None) -> None:
    cpus, loaded, modules, import_wall = [], "", [], []
    for _ in range(runs):
        before()
        cpu, stderr, status = cpu_seconds([sys.executable, *argv], env)
        if status not in (0, 1):
            raise SystemExit(f"{label} failed ({status}): {stderr[-2000:]}")
        cpus.append(cpu)
        for line in stderr.splitlines():
            if line.startswith("LOADED "):
                loaded = line[7:]
            elif line.startswith("MODULES "):
                modules = line[8:].split(",")
        before()
        import_wall.append(import_ms(argv, env))
    importing = _IMPORT_ONLY.format(functions=str(ROOT / "functions"), modules=modules)
    import_cpu = statistics.median(cpu_seconds([sys.executable, "-c", importing], env)[0] for _ in range(runs))
    cpu = statistics.median(cpus)
    print(
        f"{label:<34} CPU {cpu * 1000:4.0f} ms ({(cpu - baseline) * 1000:+4.0f} over its baseline); "
        f"its {len(modules)} modules imported alone: {(import_cpu - baseline) * 1000:+4.0f} ms CPU "
        f"(importtime {statistics.median(import_wall):4.0f} ms wall); loads: {loaded or '-'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--admin-url", help="admin URL of a Postgres server (default: a throwaway cluster)")
    args = parser.parse_args()
    heavy = repr(HEAVY)
    cli = _CLI_WITH_MODULES.format(heavy=heavy)
    gateway = ScriptedGateway(keep_ids=False).start()
    try:
        with benchmark_database(args.admin_url) as url:
            env = {
                **os.environ,
                "DATABASE_URL": url,
                "TELEMETRY_GATEWAY_ADDR": gateway.url,
                "TELEMETRY_INSTANCE_ID": "benchmark-instance",
            }
            baseline = statistics.median(cpu_seconds([sys.executable, "-c", _BASELINE], env)[0] for _ in range(5))
            print(f"{'python -c pass':<34} CPU {baseline * 1000:5.0f} ms")
            measure("telemetry-export --help", ["-c", cli, "--help"], env, args.runs, baseline)
            measure("telemetry-export queue status", ["-c", cli, "queue", "status"], env, args.runs, baseline)
            with Connections(DatabaseSettings(url=url)).connection() as conn:
                fill_queue(conn, args.rows)

                def unexport() -> None:
                    conn.cursor().execute("UPDATE telemetry_events_export_queue SET exported_at = NULL, attempts = 0")
                    conn.commit()

                label = f"telemetry-export export ({args.rows} rows)"
                measure(label, ["-c", cli, "export"], env, args.runs, baseline, unexport)
            framework = statistics.median(
                cpu_seconds([sys.executable, "-c", _FRAMEWORK_ONLY], env)[0] for _ in range(5)
            )
            cold = _COLD_START.format(functions=str(ROOT / "functions"), heavy=heavy)
            print(f"{'functions-framework alone':<34} CPU {framework * 1000:5.0f} ms")
            measure("function cold start", ["-c", cold], env, args.runs, framework)
    finally:
        gateway.stop()


if __name__ == "__main__":
    main()
