#!/usr/bin/env bash
# The GPU run kit in one command (docs/benchmarks.md, "The GPU run kit"): on a machine with an
# accelerator, the paper profile's training throughput with and without torch.compile, a
# 2-epoch pretraining with its evaluation, the same run killed and resumed, and the 500-epoch
# estimate, into one JSON and one Markdown table; the last line printed is the verdict.
#   scripts/gpu_check.sh [--device cuda|cpu] [--size tiny|full] [--out DIR] [--work DIR]
#                        [--wheels DIR]
# Needs python3 (3.11+; another with PYTHON=...) with pip, torch, numpy, scipy, scikit-learn,
# pandas and tqdm, and no network: any other package comes from the wheels carried in wheels/
# (`python3 scripts/gpu_kit.py --download-line` prints the pip download that makes it). Not the
# project's .venv: packages and this checkout go into WORK/site (default build/gpu-kit/site).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "gpu_check: $PYTHON is not Python 3.11 or newer (pyproject.toml's requires-python)" >&2
    exit 2
fi
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    echo "gpu_check: $PYTHON has no pip, which installs the carried wheels" >&2
    exit 2
fi
exec "$PYTHON" scripts/gpu_kit.py "$@"
