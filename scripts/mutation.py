#!/usr/bin/env python3
"""Mutation testing (mutmut 3) of the modules that decide what happens to data; run by scripts/mutation.sh.

mutmut copies the code it mutates into `mutants/` and runs the tests against that copy, importing it by the
module name its path gives (`src/` stripped). Our packages do not sit where their names say
(`telemetry_export` lives in functions/), and the editable install would hand tests the original. So each module
is tested in a staging tree of its own, build/mutation/<name>/, laid out as mutmut expects:

    src/telemetry_export  src/telemetry_events  src/gateway_run   copies of the packages
    tests/  localdev/  functions/main.py  pyproject.toml          copies, plus a [tool.mutmut] section

mutmut puts mutants/src first on sys.path, so the tests import the mutated copy; only tests that run the module in
their own process can see a mutant (a `python -m gateway_run` child imports the installed original), so each
module lists the in-process tests that exercise it. Before trusting a score, the run checks that one known mutant
of the module (KNOWN_MUTANTS) is killed.

Usage:
    scripts/mutation.sh                  # every module; prints the score per module
    scripts/mutation.sh settlement       # some modules (names from MODULES)
    scripts/mutation.sh --list           # the modules and their tests

Postgres: TEST_DATABASE_URL when set, else a throwaway cluster started once for the whole run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAGE = REPO / "build" / "mutation"
MUTMUT = Path(sys.executable).with_name("mutmut")
PACKAGES = {"telemetry_export": "functions/telemetry_export", "telemetry_events": "telemetry_events"}
PACKAGES["gateway_run"] = "gateway_run"
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"  # the first characters of mutmut's progress lines


@dataclass(frozen=True)
class Module:
    path: str  # in the staging tree (src/<package>/...)
    tests: tuple[str, ...]  # in-process tests that exercise it
    known_mutant: str  # a mutant any honest test selection kills: proof that the tests run the mutated copy


MODULES = {
    "settlement": Module(
        "src/telemetry_export/settlement.py",
        ("tests/exporter/test_settlement.py", "tests/exporter/test_settlement_rules.py"),
        "telemetry_export.settlement.x_settle__mutmut_1",
    ),
    "gateway_errors": Module(
        "src/telemetry_export/gateway_errors.py",
        ("tests/exporter/test_gateway_errors.py", "tests/exporter/test_gateway_error_rules.py"),
        "telemetry_export.gateway_errors.x_classify__mutmut_1",
    ),
    "redaction": Module(
        "src/telemetry_events/redaction.py",
        (
            "tests/test_redaction.py",
            "tests/test_recording.py",
            "tests/test_event_rules.py",
            "tests/gateway/test_pubsub_messages.py",
            "tests/test_protojson_reader.py",  # redacted_arguments against redacted_bytes, as a property
            "tests/test_redaction_rules.py",
        ),
        "telemetry_events.redaction.xǁRedactionPolicyǁredact__mutmut_1",
    ),
    "cleanup": Module(
        "src/telemetry_export/cleanup.py",
        ("tests/jobs/test_cleanup_job.py", "tests/jobs/test_cleanup_failures.py", "tests/jobs/test_cleanup_budget.py"),
        "telemetry_export.cleanup.x_clean_up__mutmut_1",
    ),
    "export_mode": Module(
        "src/telemetry_events/export_mode.py",
        ("tests/test_event_rules.py", "tests/test_recording.py", "tests/test_export_scope_rules.py"),
        "telemetry_events.export_mode.xǁExportScopeǁexports__mutmut_1",
    ),
    "batches": Module(
        "src/gateway_run/batches.py",
        ("tests/gateway/test_batches.py",),
        "gateway_run.batches.x_settle__mutmut_1",
    ),
    "reader_processes": Module(
        "src/telemetry_export/reader_processes.py",
        ("tests/test_reader_processes.py",),
        "telemetry_export.reader_processes.x_results_in_order__mutmut_1",
    ),
    "outgoing": Module(
        "src/telemetry_export/outgoing.py",
        ("tests/exporter/test_schema_only.py", "tests/test_export_scope_rules.py"),
        "telemetry_export.outgoing.x_withheld_reason__mutmut_1",
    ),
}


def stage(name: str, module: Module, checkout: Path) -> Path:
    """A fresh staging tree for `module`, copied from `checkout`, with its mutmut configuration."""
    root = STAGE / name
    shutil.rmtree(root, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    for package, path in PACKAGES.items():
        shutil.copytree(checkout / path, root / "src" / package, ignore=ignore)
    for directory in ("tests", "localdev"):
        shutil.copytree(checkout / directory, root / directory, ignore=ignore)
    (root / "functions").mkdir()
    shutil.copy2(checkout / "functions" / "main.py", root / "functions" / "main.py")  # the functions' entry points
    tests = [test for test in module.tests if (checkout / test).exists()]
    config = {
        "source_paths": ["src"],
        "only_mutate": [module.path],
        "also_copy": ["localdev/", "functions/"],  # functions/ holds only main.py here
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-q", "-m", "not slow and not benchmark"],
        "pytest_add_cli_args_test_selection": tests,
        "use_git_change_detection": False,
        # grpc (imported by the exporter's modules) is not fork-safe: fork from a server kept free of it.
        "process_isolation": "forkserver",
    }
    lines = ["", "[tool.mutmut]"] + [f"{key} = {json.dumps(value)}" for key, value in config.items()]
    (root / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text() + "\n".join(lines) + "\n")
    return root


def mutmut(root: Path, *args: str, env: dict[str, str], check: bool = True) -> str:
    result = subprocess.run(
        [str(MUTMUT), *args], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if check and result.returncode != 0:
        sys.exit(f"mutmut {' '.join(args)} failed in {root}:\n{result.stdout[-4000:]}")
    return result.stdout


def score(root: Path, env: dict[str, str]) -> tuple[dict[str, int], list[str]]:
    """(counts by status, surviving mutant names) of the last run in `root`."""
    mutmut(root, "export-cicd-stats", env=env)
    stats = json.loads((root / "mutants" / "mutmut-cicd-stats.json").read_text())
    survivors = [
        line.split(":")[0].strip()
        for line in mutmut(root, "results", env=env).splitlines()
        if line.strip().endswith((": survived", ": no tests", ": timeout", ": suspicious"))
    ]
    return stats, survivors


def run_module(name: str, module: Module, env: dict[str, str], max_children: int, source: Path) -> dict[str, object]:
    if not any((source / test).exists() for test in module.tests):
        # Without a selection pytest would run the whole suite, subprocesses and all: say so instead.
        print(f"mutation: {name}: skipped, none of its tests exist in {source}: {', '.join(module.tests)}")
        return {"module": name, "skipped": True, "survivors": []}
    root = stage(name, module, source)
    started = time.monotonic()
    print(f"mutation: {name}: mutating {module.path} against {', '.join(module.tests)}", flush=True)
    output = mutmut(root, "run", "--max-children", str(max_children), env=env, check=False)
    # Without mutmut's progress spinner: one line per change of state is enough to read afterwards.
    (root / "mutmut-run.log").write_text("\n".join(line for line in output.splitlines() if line[:1] not in SPINNER))
    stats, survivors = score(root, env)
    # The score counts only if the tests really ran the mutated copy: a mutant they must kill was killed.
    known = mutmut(root, "show", module.known_mutant, env=env, check=False)
    if not known.startswith(f"# {module.known_mutant}: killed"):
        sys.exit(f"mutation: {name}: the known mutant {module.known_mutant} was not killed:\n{known[:2000]}")
    return {"module": name, **stats, "survivors": survivors, "seconds": round(time.monotonic() - started)}


def database_env() -> tuple[dict[str, str], object | None]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MUTANT")}
    if env.get("TEST_DATABASE_URL"):
        return env, None
    sys.path.insert(0, str(REPO))
    from localdev.postgres import start_cluster

    cluster = start_cluster()
    env["TEST_DATABASE_URL"] = cluster.admin_url
    return env, cluster


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help=f"some of: {', '.join(MODULES)}")
    parser.add_argument("--list", action="store_true", help="list the modules and their tests")
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument(
        "--source", type=Path, default=REPO, help="the checkout to copy code and tests from (default: this one)"
    )
    options = parser.parse_args()
    if options.list:
        for name, module in MODULES.items():
            print(f"{name}: {module.path} <- {' '.join(module.tests)}")
        return 0
    unknown = [name for name in options.modules if name not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(MODULES)}")
    env, cluster = database_env()
    results = []
    try:
        for name in options.modules or list(MODULES):
            results.append(run_module(name, MODULES[name], env, options.max_children, options.source.resolve()))
    finally:
        if cluster is not None:
            cluster.destroy()  # type: ignore[attr-defined]
    print()
    print("| module | mutants | killed | survived | no tests | timeout | score | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for result in results:
        if result.get("skipped"):
            print(f"| {result['module']} | not run: its tests are missing | | | | | | |")
            continue
        total = result["total"]
        killed = result["killed"]
        print(
            f"| {result['module']} | {total} | {killed} | {result['survived']} | {result['no_tests']} "
            f"| {result['timeout']} | {100 * killed / max(total, 1):.1f}% | {result['seconds']} |"
        )
    for result in results:
        for survivor in result["survivors"]:
            print(f"survived: {survivor}")
    (STAGE / "scores.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
