#!/usr/bin/env bash
# The test suite, as CI runs it: lint, then every test except the long variants (scripts/test-long.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/checkov.sh --install  # checkov's own environment, so the Terraform security scan runs too
.venv/bin/ruff check .
exec .venv/bin/pytest -m "not slow" "$@"
