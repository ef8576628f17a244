#!/usr/bin/env bash
# Run checkov (static security checks) on terraform/, offline, against the skip list in terraform/.checkov.yaml.
#
# Why its own environment: checkov pins many libraries that would clash with the project's; it lives in a
# separate virtualenv (default .venv-checkov at the repository root, or $CHECKOV_VENV), created on first use
# (about a minute). Why offline: --skip-download stops checkov from fetching guidelines or policies from Prisma
# Cloud, so results depend only on the pinned checkov version and this repository.
#
# Usage:
#   scripts/checkov.sh             # scan with the skip list; exit status 1 on a failed check
#   scripts/checkov.sh --summary   # scan WITHOUT the skip list, then account for every failure: prints one JSON
#                                  # line {"passed", "failed", "skipped", ...} where skipped = failures the skip
#                                  # list covers; exit 1 if anything else failed or a skipped check passes
#   scripts/checkov.sh --install   # only create the environment
#   scripts/checkov.sh ARGS...     # extra arguments go to checkov (e.g. -o json)
set -euo pipefail

CHECKOV_VERSION="3.3.30"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CHECKOV_VENV:-$root/.venv-checkov}"
python="${PYTHON:-python3}"
config="terraform/.checkov.yaml"

if [[ ! -x "$venv/bin/checkov" ]] || [[ "$("$venv/bin/checkov" --version 2>/dev/null)" != "$CHECKOV_VERSION" ]]; then
  echo "checkov.sh: installing checkov $CHECKOV_VERSION into $venv" >&2
  "$python" -m venv "$venv"
  log="$(mktemp)"
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
fi

case "${1:-}" in
  --install) exit 0 ;;
esac

cd "$root"
export BC_SKIP_MAPPING=TRUE # no download of the Prisma guideline/severity mapping
export LOG_LEVEL=WARNING    # checkov's own logger; keeps stdout to the report

if [[ "${1:-}" != "--summary" ]]; then
  exec "$venv/bin/checkov" --directory terraform --config-file "$config" --skip-download "$@"
fi

report="$(mktemp)"
trap 'rm -f "$report"' EXIT
# checkov reads terraform/.checkov.yaml by itself (it looks in the scanned directory); a --skip-check on the
# command line overrides the file's list, and this one names no real check. Exit status 1 only means "some check
# failed": the accounting below decides.
"$venv/bin/checkov" --directory terraform --framework terraform --skip-check NO_SUCH_CHECK --skip-download \
  --output json >"$report" || true
"$venv/bin/python" - "$report" "$config" <<'PY'
"""Account for every failed check: covered by the skip list (skipped) or a real failure."""
import json
import sys

import yaml

with open(sys.argv[1], encoding="utf-8") as handle:
    report = json.load(handle)
with open(sys.argv[2], encoding="utf-8") as handle:
    skip_list = set(yaml.safe_load(handle).get("skip-check", []))
if isinstance(report, list):  # one entry per framework
    report = next(r for r in report if r.get("check_type") == "terraform")
failures = report["results"]["failed_checks"]
skipped = [f for f in failures if f["check_id"] in skip_list]
failed = [f for f in failures if f["check_id"] not in skip_list]
stale = sorted(skip_list - {f["check_id"] for f in failures})
summary = {
    "checkov_version": report["summary"]["checkov_version"],
    "resources": report["summary"]["resource_count"],
    "passed": report["summary"]["passed"],
    "failed": len(failed),
    "skipped": len(skipped),
    "failed_checks": sorted({f"{f['check_id']} {f['resource']}" for f in failed}),
    "skipped_by_check": {c: sum(f["check_id"] == c for f in skipped) for c in sorted(skip_list)},
    "stale_skips": stale,
    "parsing_errors": report["summary"]["parsing_errors"],
}
print(json.dumps(summary))
sys.exit(1 if failed or stale or summary["parsing_errors"] else 0)
PY
