"""Self-check of the environment: torch, torchaudio's compiled part and aclaudio load together.

A torchaudio built for another torch fails only when its compiled library loads (an undefined
symbol), which would otherwise surface as errors at test collection. This says so in one line,
naming both versions. Exit status 0 when everything loads; `--quiet` prints nothing on success.
"""

from __future__ import annotations

import sys
from importlib import metadata


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def main(quiet: bool = False) -> int:
    versions = f"torch {_version('torch')}, torchaudio {_version('torchaudio')}"
    try:
        import torch
        import torchaudio.functional

        # lfilter runs in torchaudio's compiled library: loading it is what a mismatch breaks.
        torchaudio.functional.lfilter(
            torch.zeros(1, 8), torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0])
        )
    except Exception as error:  # noqa: BLE001 - any failure here means the pair does not load
        cause = error.__cause__ or error  # the loader's own reason, e.g. an undefined symbol
        first_line = (str(cause).strip() or repr(cause)).splitlines()[0]
        print(
            f"[setup] torch and torchaudio do not load together ({versions}): {first_line}. "
            "Reinstall the locked versions: rm -rf .venv && bash scripts/setup_env.sh",
            file=sys.stderr,
        )
        return 1
    try:
        import aclaudio
    except Exception as error:  # noqa: BLE001
        print(f"[setup] aclaudio does not import ({versions}): {error}", file=sys.stderr)
        return 1
    if not quiet:
        python = sys.version.split()[0]
        print(f"[setup] ok: aclaudio {aclaudio.__version__}, {versions}, python {python}")
    return 0


if __name__ == "__main__":
    sys.exit(main(quiet="--quiet" in sys.argv[1:]))
