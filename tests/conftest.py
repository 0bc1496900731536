"""Shared fixtures: small datasets in the FSDnoisy18k layout written by the tests themselves, a
local HTTP server for the downloaders, and the command run in-process."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from aclaudio import cli

CLASSES = ["Bell", "Buzz", "Chirp"]
ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def tone(freq: float, seconds: float, rate: int = 22050, *, channels: int = 1) -> np.ndarray:
    """A sine with a little noise, as (samples,) or (samples, channels)."""
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(0).standard_normal(len(t))
    wave = 0.5 * np.sin(2 * np.pi * freq * t) + 0.01 * noise
    return wave if channels == 1 else np.stack([wave] * channels, axis=1)


def write_layout(root: Path, train_rows: list[str], test_rows: list[str]) -> Path:
    """Write the two CSVs (header included in the rows' caller) under root's meta folder."""
    meta = root / "FSDnoisy18k.meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "train.csv").write_text("\n".join(train_rows) + "\n")
    (meta / "test.csv").write_text("\n".join(test_rows) + "\n")
    return root


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """Three classes of tones (2 clean + 2 noisy train clips each, 1 test clip each)."""
    train_dir = tmp_path / "FSDnoisy18k.audio_train"
    test_dir = tmp_path / "FSDnoisy18k.audio_test"
    train_dir.mkdir()
    test_dir.mkdir()
    train = ["fname,label,aso_id,manually_verified,noisy_small"]
    test = ["fname,label,aso_id"]
    n = 0
    for k, label in enumerate(CLASSES):
        for j in range(4):
            n += 1
            sf.write(train_dir / f"{n}.wav", tone(300 * (k + 1), 0.5 + 0.4 * j), 22050)
            train.append(f"{n}.wav,{label},/m/{k},{int(j < 2)},{int(j == 2)}")
        n += 1
        sf.write(test_dir / f"{n}.wav", tone(300 * (k + 1), 1.2), 22050)
        test.append(f"{n}.wav,{label},/m/{k}")
    return write_layout(tmp_path, train, test)


def run_cli(capsys, *argv: str | Path) -> tuple[int, dict, str]:
    """`aclaudio ARGV` in this process: exit code, the JSON summary line, the text before it."""
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1]), "\n".join(out[:-1])


def run_cli_bound_by_permissions(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    """`aclaudio ARGV` in a process that file permissions bind. Root passes them through two
    capabilities, so as root the command runs without those (still uid 0, the files' owner):
    a chmod-ed file or folder then refuses it as it refuses any user."""
    if not hasattr(os, "geteuid"):
        pytest.skip("POSIX file permissions")
    prefix = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv") or pytest.skip("setpriv (util-linux) drops capabilities")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    env = {k: v for k, v in os.environ.items() if k != "ACLAUDIO_CACHE"}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "aclaudio.cli", *map(str, argv)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
    )


def zip_bytes(members: Mapping[str, bytes]) -> bytes:
    """A zip archive (stored, not compressed) holding `members`, name -> bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


class Handler(BaseHTTPRequestHandler):
    """GET /NAME: honours "Range: bytes=N-" (206, or 416 past the end) unless told not to.

    GET /record/NAME redirects to /NAME.
    """

    def do_GET(self) -> None:
        server: FileServer = self.server  # type: ignore[assignment]
        name = self.path.lstrip("/").split("?")[0]
        wanted = self.headers.get("Range")
        server.requests.append((name, wanted))
        if name.startswith("record/"):  # as Zenodo does, moved to another address
            self.send_response(302)
            self.send_header("Location", f"/{name.removeprefix('record/')}")
            self.end_headers()
            return
        blob = server.blobs.get(name)
        if blob is None:
            self.send_error(404)
            return
        start = 0
        if wanted and server.honor_range:
            start = int(wanted.removeprefix("bytes=").removesuffix("-"))
            if start >= len(blob):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(blob)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(blob) - 1}/{len(blob)}")
        else:
            self.send_response(200)
        body = blob[start:]
        if server.send_length:  # else the body ends when the connection closes (HTTP/1.0)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = server.cut_after.pop(name, None)  # only the first response is cut
        self.wfile.write(body if cut is None else body[:cut])  # then the connection closes

    def log_message(self, *args) -> None:
        pass


class FileServer(ThreadingHTTPServer):
    """Serves `blobs` (name -> bytes) on 127.0.0.1 and records every request."""

    def __init__(self, blobs: Mapping[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.blobs = dict(blobs)
        self.honor_range = True
        self.send_length = True
        self.cut_after: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []

    def url(self, name: str = "{name}") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}?download=1"


@contextmanager
def serving(blobs: Mapping[str, bytes]) -> Iterator[FileServer]:
    server = FileServer(blobs)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory) -> Path:
    """One smoke dataset, run store and results folder shared by every notebook (as run_all)."""
    from aclaudio.data import synth

    root = tmp_path_factory.mktemp("study")
    synth.synthesize(root / "data", profile="smoke", seed=0, progress=False)
    return root


def execute_smoke_notebook(notebook: Path, study: Path) -> Path:
    """Execute a notebook in the smoke profile into STUDY/results/smoke/notebooks/, where
    run_all.sh puts it; once a session, so the report's tests reuse the notebook tests' work."""
    import papermill

    executed = study / "results" / "smoke" / "notebooks" / notebook.name
    if not executed.exists():
        executed.parent.mkdir(parents=True, exist_ok=True)
        papermill.execute_notebook(
            notebook,
            executed,
            kernel_name="aclaudio",
            cwd=notebook.parent,
            progress_bar=False,
            parameters={
                "profile": "smoke",
                "data_dir": str(study / "data"),
                "runs_dir": str(study / "runs"),
                "results_root": str(study / "results"),
            },
        )
    return executed
