"""What a user outside the repository looks for: the licence, the citation, the version,
and `python -m aclaudio`."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml

import aclaudio

ROOT = Path(__file__).resolve().parents[1]


def run_module(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    """`python -m aclaudio` started away from the repository."""
    return subprocess.run(
        [sys.executable, "-m", "aclaudio", *argv], capture_output=True, text=True, cwd=cwd
    )


# ---------------------------------------------------------------- licence and citation


def test_license_is_mit_as_pyproject_says():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the aclaudio authors\n")
    assert "Permission is hereby granted, free of charge" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] == "MIT"


def test_citation_cff_cites_the_software_and_prefers_the_paper():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert {"cff-version", "message", "title", "authors"} <= set(cff)  # required by CFF 1.2.0
    assert cff["type"] == "software" and cff["license"] == "MIT"
    assert all("name" in a or "family-names" in a for a in cff["authors"])
    paper = cff["preferred-citation"]
    assert {"type", "title", "authors"} <= set(paper)  # required of a reference
    assert paper["type"] == "conference-paper" and paper["year"] == 2023
    assert paper["title"] == (
        "Self-supervised learning of audio representations using angular contrastive loss"
    )
    assert [(a["given-names"], a["family-names"]) for a in paper["authors"]] == [
        ("Shanshan", "Wang"), ("Soumya", "Tripathy"), ("Annamaria", "Mesaros"),
    ]  # fmt: skip
    assert "ICASSP" in paper["conference"]["name"]
    assert {"type": "other", "value": "arXiv:2211.05442"}.items() <= paper["identifiers"][0].items()
    assert paper["url"] == "https://arxiv.org/abs/2211.05442"


# ---------------------------------------------------------------- version and python -m


def test_version_has_one_source():
    assert aclaudio.__version__ == metadata.version("aclaudio")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert aclaudio.__version__ == pyproject["project"]["version"]
    assert pyproject["project"]["version"] not in (ROOT / "lib/__init__.py").read_text()


@pytest.mark.parametrize(
    "command",
    [[str(Path(sys.executable).parent / "aclaudio")], [sys.executable, "-m", "aclaudio"]],
    ids=["console script", "python -m"],
)
def test_version_flag(command):
    out = subprocess.run([*command, "--version"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"aclaudio {metadata.version('aclaudio')}\n"


def test_python_m_aclaudio_runs_the_command(tmp_path):
    out = run_module(tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("usage: aclaudio")
