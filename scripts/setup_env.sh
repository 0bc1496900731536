#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv) and its Jupyter kernel from the lock.
# requirements.lock holds the exact version of every package (regenerate it with the command at
# its top); pip installs exactly those, then the project itself without resolving anything else.
# Idempotent: when the lock, pyproject.toml and this script are unchanged since the last set-up,
# it returns at once. Needs only python3 (3.11+) with venv and pip. Override it with PYTHON=...
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.aclaudio-setup
want=$(cat requirements.lock pyproject.toml scripts/setup_env.sh scripts/check_env.py |
       "$PYTHON" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')

if [[ -f $STAMP && "$(cat "$STAMP")" == "$want" ]] && "$VENV/bin/python" scripts/check_env.py --quiet; then
    exit 0
fi

echo "[setup] installing the locked environment in $VENV (first time: a few minutes, torch is large)"
[[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade "pip>=24"
"$VENV/bin/python" -m pip install --quiet -r requirements.lock
# The project itself: no dependency resolution, no build environment fetched from the network.
"$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e .
# The kernel lives inside the venv (--sys-prefix), so papermill and JupyterLab started from
# the venv find it and nothing is written to the user's home.
"$VENV/bin/python" -m ipykernel install --sys-prefix --name aclaudio \
    --display-name "Python (aclaudio)" >/dev/null
# The kernel talks to papermill over local TCP and would warn of it on every notebook: it logs
# errors only (a notebook's own output and errors are unaffected).
"$VENV/bin/python" - <<'PY'
import json, pathlib, sys
spec = pathlib.Path(sys.prefix, "share/jupyter/kernels/aclaudio/kernel.json")
kernel = json.loads(spec.read_text())
kernel["argv"].append("--IPKernelApp.log_level=ERROR")
spec.write_text(json.dumps(kernel, indent=1))
PY
"$VENV/bin/python" scripts/check_env.py
echo "$want" > "$STAMP"
