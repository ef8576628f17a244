#!/usr/bin/env bash
# The long variants of the tests (marked slow): larger backlogs and fault scenarios, and the leak property test's
# long profile (ten times the default suite's examples, from a fresh seed printed as TEST_LEAK_SEED=...).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/pytest -m slow "$@"
