#!/usr/bin/env bash
# Runs the fault scenarios and prints the table they write (build/fault-table.md).
#
#   scripts/fault-table.sh                 # the default scenarios (a few thousand events each)
#   scripts/fault-table.sh --long          # also the long variants (tens of thousands of events)
#   scripts/fault-table.sh --write-docs    # and put the table into docs/faults.md
#
# Extra arguments go to pytest. The table holds what this run measured: paste it nowhere by
# hand; --write-docs replaces the part of docs/faults.md between its table markers.
set -euo pipefail
cd "$(dirname "$0")/.."

marker="not slow"
write_docs=false
args=()
for arg in "$@"; do
    case "$arg" in
        --long) marker="" ;;
        --write-docs) write_docs=true ;;
        *) args+=("$arg") ;;
    esac
done

# Every module that writes a row of the table (FaultTable): the scenarios, the poison row and the scope, the fleet.
scenarios=(tests/faults/test_pipeline_faults.py tests/faults/test_poison_and_scope.py tests/faults/test_fleet.py)
rm -f build/fault-table.md
if [ -n "$marker" ]; then
    .venv/bin/pytest "${scenarios[@]}" -m "$marker" -q "${args[@]}"
else
    .venv/bin/pytest "${scenarios[@]}" -q "${args[@]}"
fi

table=build/fault-table.md
[ -s "$table" ] || { echo "no table was written ($table)" >&2; exit 1; }
cat "$table"

if $write_docs; then
    .venv/bin/python - "$table" docs/faults.md <<'EOF'
import re
import sys
from pathlib import Path

table, docs = Path(sys.argv[1]).read_text(), Path(sys.argv[2])
begin, end = "<!-- fault-table:begin -->", "<!-- fault-table:end -->"
text = docs.read_text()
if begin not in text or end not in text:
    sys.exit(f"{docs} has no {begin} ... {end} markers")
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
docs.write_text(f"{head}{begin}\n{table.strip()}\n{end}{tail}")
print(f"wrote the table into {docs}")
EOF
fi
