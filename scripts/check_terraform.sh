#!/usr/bin/env bash
# Every offline check of terraform/ in one command: formatting, the provider-schema and wiring tests, and checkov.
#
# Why: `terraform init` / `validate` need the provider download, which is not always possible (CI without
# network, this sandbox). These checks need no network except the first checkov install.
#
# Usage: scripts/check_terraform.sh   (PYTHON defaults to .venv/bin/python)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-$root/.venv/bin/python}"

echo "== terraform fmt"
terraform fmt -check -recursive -diff terraform

echo "== checkov"
scripts/checkov.sh --summary

echo "== tests/terraform"
"$python" -m pytest tests/terraform -q
