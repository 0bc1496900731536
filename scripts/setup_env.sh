#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv) and its Jupyter kernel.
# Idempotent: when pyproject.toml has not changed since the last set-up, it returns at once.
# Needs only python3 (3.11+) with venv and pip. Override the interpreter with PYTHON=...
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.aclaudio-setup
want=$(cat pyproject.toml scripts/setup_env.sh | sha256sum | cut -d' ' -f1)

if [[ -f $STAMP && "$(cat "$STAMP")" == "$want" ]] && "$VENV/bin/python" -c "import aclaudio" 2>/dev/null; then
    exit 0
fi

echo "[setup] creating the environment in $VENV (first time: a few minutes, torch is large)"
[[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"
# The kernel lives inside the venv (--sys-prefix), so papermill and JupyterLab started from
# the venv find it and nothing is written to the user's home.
"$VENV/bin/python" -m ipykernel install --sys-prefix --name aclaudio \
    --display-name "Python (aclaudio)" >/dev/null
echo "$want" > "$STAMP"
echo "[setup] done: $("$VENV/bin/python" -c 'import torch, aclaudio; print("aclaudio", aclaudio.__version__, "torch", torch.__version__)')"
