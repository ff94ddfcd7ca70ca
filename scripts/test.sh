#!/usr/bin/env bash
# Set everything up from scratch and run all tests: system packages, a fresh virtual environment with the
# training and test extras, ruff, pytest. Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/system-packages.sh

VENV=.venv-test
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
# torch pinned: on the project's machines this is a local CPU wheel; an unpinned torch downloads gigabytes.
"$VENV/bin/pip" install -q "torch==2.13.0"
"$VENV/bin/pip" install -q -e ".[train,dev]"

"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
