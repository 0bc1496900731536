#!/usr/bin/env bash
# The test command: set up the environment when missing, lint, then run the whole test suite.
# Extra arguments go to pytest, e.g. ./run_tests.sh -k features -x
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup_env.sh
.venv/bin/ruff check lib tests scripts
.venv/bin/ruff format --check lib tests scripts
.venv/bin/python -m pytest "$@"
