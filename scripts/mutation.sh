#!/usr/bin/env bash
# Mutation testing (mutmut) of the modules that decide what happens to data: the exporter's settlement and refund
# rules, the gateway's batch outcomes, redaction, cleanup's budget and the export scope. Slow (minutes per
# module): not part of CI. What it does and what the scores mean: docs/testing.md; how: scripts/mutation.py.
#
#   scripts/mutation.sh                # every module, then the score per module and each surviving mutant
#   scripts/mutation.sh settlement     # some modules
#   scripts/mutation.sh --list         # the modules and the tests run against each
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python scripts/mutation.py "$@"
