"""Packaging: the lock satisfies pyproject, every set-up reads the lock, the core installs alone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

pytestmark = (
    pytest.mark.slow
)  # fresh installs in virtual environments: not in ./run_tests.sh --fast

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"


def locked_versions() -> dict[str, str]:
    """name -> exact version, for the lock lines whose markers hold on this interpreter."""
    versions = {}
    for line in LOCK.read_text().splitlines():
        if not line or line[0] in "# ":
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier  # exactly one ==X, checked below
        assert specifier.operator == "==", f"{line}: a lock pins exact versions"
        if requirement.marker is None or requirement.marker.evaluate():
            versions[canonical(requirement.name)] = specifier.version
    return versions


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    requirements = [Requirement(r) for r in project["dependencies"] + sum(extras.values(), [])]
    return [r for r in requirements if r.name != "aclaudio"]  # an extra that includes another


def test_lock_satisfies_every_requirement_of_pyproject():
    locked = locked_versions()
    for requirement in project_requirements():
        name = canonical(requirement.name)
        assert name in locked, f"{requirement} is not in requirements.lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"requirements.lock has {name}=={locked[name]}, pyproject asks {requirement}"
        )


def test_lock_is_what_this_environment_runs():
    """The venv the tests run in was installed from the lock (same versions, nothing newer)."""
    from importlib import metadata

    for name, version in locked_versions().items():
        assert metadata.version(name) == version, name


def test_pyproject_keeps_ranges_and_excludes_the_broken_torchaudio():
    requirements = {canonical(r.name): r for r in project_requirements()}
    assert all(not str(r.specifier).startswith("==") for r in requirements.values())
    assert not requirements["torchaudio"].specifier.contains("2.11.1")
    assert requirements["torchaudio"].specifier.contains("2.11.0")


def test_lock_header_says_how_to_regenerate_it():
    header = LOCK.read_text().splitlines()[:2]
    assert "uv pip compile pyproject.toml --all-extras" in header[1]
    assert "-o requirements.lock" in header[1]


def test_environment_yml_and_setup_read_the_lock():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    (pip,) = [d["pip"] for d in environment["dependencies"] if isinstance(d, dict)]
    assert pip == ["-r requirements.lock", "-e ."]
    assert "python=3.11" in environment["dependencies"]
    setup = (ROOT / "scripts/setup_env.sh").read_text()
    assert "pip install --quiet -r requirements.lock" in setup
    assert "--no-deps --no-build-isolation -e ." in setup
    assert re.search(r"want=\$\(cat requirements\.lock ", setup), "the stamp covers the lock"
    assert "sha256sum" not in setup  # not on every macOS


def test_self_check_names_both_versions_when_torchaudio_does_not_load(tmp_path):
    """A torchaudio whose compiled part fails to load gets one line naming both versions."""
    fake = tmp_path / "torchaudio"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "raise OSError('libtorchaudio.so: undefined symbol: torch_exception_get_what')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, ROOT / "scripts/check_env.py"], capture_output=True, text=True, env=env
    )
    assert out.returncode == 1
    (line,) = out.stderr.strip().splitlines()
    from importlib import metadata

    assert f"torch {metadata.version('torch')}" in line
    assert f"torchaudio {metadata.version('torchaudio')}" in line
    assert "undefined symbol" in line and "setup_env.sh" in line


def test_self_check_passes_here():
    out = subprocess.run(
        [sys.executable, ROOT / "scripts/check_env.py"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("[setup] ok: aclaudio")


def test_console_script_lists_the_commands():
    out = subprocess.run(
        [Path(sys.executable).parent / "aclaudio", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    for command in ("download", "synth", "data", "features", "bench"):
        assert command in out.stdout


def test_package_comes_from_lib():
    import aclaudio

    assert Path(aclaudio.__file__).parent == ROOT / "lib"


CORE_USE = """
import importlib.util, sys, torch
from aclaudio import hear, losses
from aclaudio.nn import models

# (filelock is not listed: torch itself depends on it)
for extra in ("pandas", "scipy", "sklearn", "soundfile", "soxr", "tqdm", "matplotlib"):
    assert importlib.util.find_spec(extra) is None, f"{extra}, of an extra, was installed"
encoder = models.build_encoder("small")
h1, h2 = encoder(torch.randn(4, 1, 32, 40)), encoder(torch.randn(4, 1, 32, 40))
loss = losses.acl(h1, h2, h1, h2, alpha=0.3, margin=0.5, reduction="mean")
loss.backward()
grad = sum(p.grad.abs().sum() for p in encoder.parameters() if p.grad is not None)
assert torch.isfinite(loss) and grad > 0
model = hear.load_model(sys.argv[1])
embeddings, ms = hear.get_timestamp_embeddings(torch.randn(2, 16000), model)
assert embeddings.shape[:2] == ms.shape == (2, 20) and torch.isfinite(embeddings).all()
assert hear.load_model().scene_embedding_size > 0  # the shipped encoder is package data
print("core ok", float(loss), embeddings.shape)
"""


def write_export(path: Path) -> None:
    """An export of a freshly initialised small encoder (export.py's format, without a run)."""
    import dataclasses

    import torch

    from aclaudio import hear
    from aclaudio.data.features import PRESETS
    from aclaudio.nn.models import build_encoder

    state = {
        "format": hear.FORMAT,
        "encoder": {
            "name": "small",
            "kwargs": {},
            "state_dict": build_encoder("small").state_dict(),
        },
        "preset": dataclasses.asdict(PRESETS["cpu"]),
        "normalisation": {"mean": -4.0, "std": 2.0},
    }
    torch.save(state, path)


def test_core_install_without_extras(tmp_path):
    """`pip install .` in a fresh venv gives the losses, the models and the HEAR API with torch,
    torchaudio and numpy alone; the command line says which extra its commands need.

    The locked versions are used as constraints, so pip takes torch from its cache when the
    set-up has run (no second download of several GB).
    """
    source = tmp_path / "source"  # a copy: building in the checkout would leave build/ there
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "lib"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "-c", LOCK, str(source)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    write_export(tmp_path / "encoder.pt")
    use = subprocess.run(
        [python, "-c", CORE_USE, tmp_path / "encoder.pt"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert use.returncode == 0, use.stderr[-3000:]
    assert use.stdout.startswith("core ok")
    aclaudio = env_dir / "bin" / "aclaudio"
    cli = subprocess.run([aclaudio, "--help"], capture_output=True, text=True)
    assert cli.returncode == 0 and "pretrain" in cli.stdout, cli.stderr[-3000:]
    summary = subprocess.run([aclaudio, "data", "summary"], capture_output=True, text=True)
    assert summary.returncode == 1
    assert "pip install 'aclaudio[train]'" in summary.stderr, summary.stderr[-3000:]
