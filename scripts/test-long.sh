#!/usr/bin/env bash
# The long variants of the tests (marked slow): larger backlogs and fault scenarios.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/pytest -m slow "$@"
