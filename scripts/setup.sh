#!/usr/bin/env bash
# Prepares a fresh machine: a virtualenv with the project and its dev tools, and Postgres'
# server programs (tests start their own throwaway cluster). Safe to run again: it only
# reinstalls when pyproject.toml changed. Says what it does as it goes, on stderr: a cold
# machine takes a minute or two, which is too long to be silent.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup: $*" >&2; }
began=$SECONDS

command -v python3 >/dev/null || { say "python3 (>= 3.11) is required"; exit 1; }
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { say "Python >= 3.11 is required"; exit 1; }

if [ ! -x .venv/bin/python ]; then
  say "creating the virtualenv .venv"
  python3 -m venv .venv
fi
# The C extension is compiled at install time: a change to its source reinstalls too.
stamp=.venv/.installed-$(cat pyproject.toml functions/telemetry_export/*.c | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  say "installing the project and its dev tools into .venv (about a minute on a fresh machine; log: .venv/install.log)"
  step=$SECONDS
  if ! { .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip \
         && .venv/bin/python -m pip install --disable-pip-version-check -e ".[functions,gateway,cli,dev]"; } >.venv/install.log 2>&1; then
    tail -30 .venv/install.log >&2
    say "pip install failed (full log: .venv/install.log)"
    exit 1
  fi
  rm -f .venv/.installed-* && touch "$stamp"
  say "installed in $((SECONDS - step)) s"
fi
# Optional for users (recording falls back to Python), but the tests hold each C reader to the Python way.
if ! .venv/bin/python -c 'import telemetry_export._event_log_wire, telemetry_export._protojson_wire' 2>/dev/null; then
  say "recording's C extensions did not compile (gcc and Python's headers are needed; see .venv/install.log)"
  exit 1
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "Postgres' server programs (initdb, pg_ctl) are missing: installing them as root with" \
        "'apt-get update' and 'apt-get install postgresql' (a minute or two)"
    step=$SECONDS
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    say "installed postgresql in $((SECONDS - step)) s"
  else
    say "Postgres server programs (initdb, pg_ctl) are missing: install postgresql"
    exit 1
  fi
fi
if ! command -v gcloud >/dev/null || ! command -v java >/dev/null; then
  say "warning: gcloud or java is missing; Pub/Sub emulator tests will be skipped"
fi
if ! command -v terraform >/dev/null; then
  echo "setup: warning: terraform (>= 1.9) is missing; tests/terraform skips the tests that run it (terraform fmt," \
    "variable validations, plan-time checks, schedule spread, destroy without the zip)" >&2
fi
say "ready ($((SECONDS - began)) s). For the command line on your PATH, in each shell: . .venv/bin/activate"
