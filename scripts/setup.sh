#!/usr/bin/env bash
# Prepares a fresh machine: a virtualenv with the project and its dev tools, and Postgres'
# server programs (tests start their own throwaway cluster). Safe to run again: it only
# reinstalls when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v python3 >/dev/null || { echo "setup: python3 (>= 3.11) is required" >&2; exit 1; }
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "setup: Python >= 3.11 is required" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "setup: installing the project and its dev tools into .venv (log: .venv/install.log)" >&2
  if ! { .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip \
         && .venv/bin/python -m pip install --disable-pip-version-check -e ".[functions,gateway,cli,dev]"; } >.venv/install.log 2>&1; then
    tail -30 .venv/install.log >&2
    echo "setup: pip install failed (full log: .venv/install.log)" >&2
    exit 1
  fi
  rm -f .venv/.installed-* && touch "$stamp"
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Postgres server programs (apt-get install postgresql)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "setup: Postgres server programs (initdb, pg_ctl) are missing: install postgresql" >&2
    exit 1
  fi
fi
if ! command -v gcloud >/dev/null || ! command -v java >/dev/null; then
  echo "setup: warning: gcloud or java is missing; Pub/Sub emulator tests will be skipped" >&2
fi
if ! command -v terraform >/dev/null; then
  echo "setup: warning: terraform (>= 1.9) is missing; tests/terraform skips the tests that run it (terraform fmt," \
    "variable validations, plan-time checks, schedule spread, destroy without the zip)" >&2
fi
