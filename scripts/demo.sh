#!/usr/bin/env bash
# The main job locally, end to end, on real services started (and stopped) for the occasion.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m localdev.demo "$@"
