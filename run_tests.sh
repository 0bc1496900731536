#!/usr/bin/env bash
# The test command: set up the environment when missing, lint, then run the whole test suite.
#   ./run_tests.sh            everything (what CI runs)
#   ./run_tests.sh --fast     all but the slow tier (notebooks, report, browser, packaging,
#                             multi-process DDP, the cpu-size generator): the loop while editing
# Extra arguments go to pytest, e.g. ./run_tests.sh --fast -k features -x
set -euo pipefail
cd "$(dirname "$0")"
marker=()
if [[ ${1:-} == --fast ]]; then
    marker=(-m "not slow")
    shift
fi
bash scripts/setup_env.sh
.venv/bin/ruff check lib tests scripts
.venv/bin/ruff format --check lib tests scripts
.venv/bin/python -m pytest "${marker[@]}" "$@"
