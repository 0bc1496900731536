"""The package installs as `aclaudio`, and environment.yml pins what pyproject.toml pins."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    (pip,) = [d["pip"] for d in environment["dependencies"] if isinstance(d, dict)]
    assert set(pip) - {"-e ."} == wanted
    assert "python=3.11" in environment["dependencies"]


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
