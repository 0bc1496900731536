"""What a user outside the repository looks for: the licence, the citation, the version,
`python -m aclaudio`, and `aclaudio config show` listing what `--set` accepts."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import torch
import yaml

import aclaudio
from aclaudio import cli
from aclaudio.cli.runs_table import not_in_effect
from aclaudio.nn import augment
from aclaudio.recipes.pretrain import epoch_steps
from aclaudio.training import config

ROOT = Path(__file__).resolve().parents[2]


def run_module(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    """`python -m aclaudio` started away from the repository."""
    return subprocess.run(
        [sys.executable, "-m", "aclaudio", *argv], capture_output=True, text=True, cwd=cwd
    )


def show(capsys, *argv: str) -> tuple[list[str], dict]:
    assert cli.main(["config", "show", *argv]) == 0
    *lines, last = capsys.readouterr().out.strip().splitlines()
    return lines, json.loads(last)


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
        ("Shanshan", "Wang"),
        ("Soumya", "Tripathy"),
        ("Annamaria", "Mesaros"),
    ]
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
    out = run_module(tmp_path, "config", "show", "--profile", "smoke")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["ok"] and summary["settings"]["epochs"] == 1
    out = run_module(tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("usage: aclaudio")


# ---------------------------------------------------------------- config show


def expected_keys(cfg) -> set[str]:
    """The settings of a config, written out field by field (the augmentation's and the
    objective's nested)."""
    keys = set()
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, aclaudio.nn.augment.AugmentConfig) or f.name == "loss":
            keys |= {f"{f.name}.{g.name}" for g in dataclasses.fields(value)}
        else:
            keys.add(f.name)
    return keys


@pytest.mark.parametrize("kind", ["pretrain", "supervised"])
@pytest.mark.parametrize("profile", config.PROFILES)
def test_config_show_lists_every_setting_of_the_profile(capsys, kind, profile):
    lines, summary = show(capsys, "--profile", profile, "--kind", kind)
    cfg = config.profile_config(kind, profile)
    assert summary["ok"] and summary["kind"] == kind and summary["profile"] == profile
    listed = [line.split()[0].partition("=") for line in lines]
    assert {key for key, _, _ in listed} == set(summary["settings"]) == expected_keys(cfg)
    assert len(listed) == len(summary["settings"])
    # every listed value, given back to --set, leaves the profile's config unchanged
    for key, _, text in listed:
        assert config.with_overrides(cfg, [f"{key}={text}"]) == cfg, key
    # the types column names the type --set checks against
    types = {line.split()[0].partition("=")[0]: line.split()[1] for line in lines}
    assert types == summary["types"]
    assert types["epochs"] == "int" and types["loss.reduction"] == "str"


def test_config_show_values_follow_the_profile(capsys):
    lines, summary = show(capsys, "--profile", "paper")
    assert "epochs=500" in [line.split()[0] for line in lines]
    assert "lr_milestones=[325,425]" in [line.split()[0] for line in lines]
    assert "augment.crop_scale=[0.8,1.0]" in [line.split()[0] for line in lines]
    assert summary["settings"]["encoder"] == "resnet18"
    assert summary["types"]["lr_milestones"] == "tuple"
    _, cpu = show(capsys, "--profile", "cpu")
    assert cpu["settings"]["steps"] == 1000 and cpu["settings"]["encoder"] == "small"


def test_listed_keys_take_new_values_through_set(capsys):
    _, summary = show(capsys, "--profile", "cpu")
    new = {"augment.noise": "0.5", "lr_milestones": "[5,7]", "projection": "false", "lr": "1"}
    assert set(new) <= set(summary["settings"])
    base = config.profile_config("pretrain", "cpu")
    changed = config.with_overrides(base, [f"{key}={text}" for key, text in new.items()])
    assert changed.augment.noise == 0.5 and changed.lr_milestones == (5, 7)
    assert changed.projection is False
    assert changed.lr == 1.0 and isinstance(changed.lr, float)
    # what is not listed is refused: the augmentation as a whole, and the supervised one
    assert "augment" not in summary["settings"]
    with pytest.raises(ValueError, match="unknown setting 'augment'"):
        config.with_overrides(base, ["augment=0"])
    _, supervised = show(capsys, "--kind", "supervised")
    assert not any(key.startswith("augment") for key in supervised["settings"])
    with pytest.raises(ValueError, match="unknown setting 'augment.noise'"):
        config.with_overrides(config.profile_config("supervised", "cpu"), ["augment.noise=0.5"])


def test_config_show_finetune(capsys):
    for profile, epochs, milestones in (("cpu", 30, [12, 24]), ("paper", 200, [80, 160])):
        lines, summary = show(capsys, "--kind", "finetune", "--profile", profile)
        assert lines[0].startswith(f"finetune settings of the {profile} profile")
        assert (summary["settings"]["epochs"], summary["settings"]["lr_milestones"]) == (
            epochs,
            milestones,
        )
        assert "lr=0.01" in [line.split()[0] for line in lines[1:]]


def plan(cfg) -> list[int]:
    """The SGD steps of each epoch of a pretraining on 1,000 training clips."""
    return epoch_steps(cfg, argparse.Namespace(train_rows=range(1000)))


def views(cfg) -> torch.Tensor:
    """A batch of augmented views, drawn from a fixed seed."""
    x = torch.rand(4, 1, 96, 101, generator=torch.Generator().manual_seed(0))
    drawn = torch.Generator().manual_seed(1)
    return augment.augment(x, x.flip(0), cfg.augment, mean=0.5, std=0.3, generator=drawn)


#: What each setting marked as taking no effect would change, were it in effect.
EFFECT = {"epochs": plan, "augment.freq_mask": views, "augment.time_mask": views}


@pytest.mark.parametrize("profile", config.PROFILES)
def test_config_show_marks_the_settings_that_take_no_effect(capsys, profile):
    """Each marked key, set to another value, changes nothing; the same change where it is
    not marked does change what it drives (so the check can fail)."""
    lines, summary = show(capsys, "--profile", profile)
    cfg = config.profile_config("pretrain", profile)
    marked = summary["overridden"]
    assert set(marked) <= set(EFFECT)
    assert ("epochs" in marked) == (cfg.steps > 0)
    notes = {line.split()[0].partition("=")[0]: " ".join(line.split()[2:]) for line in lines}
    assert {key: note for key, note in notes.items() if note} == marked
    for key in marked:
        changed = config.with_overrides(cfg, [f"{key}=7"])
        assert torch.equal(torch.as_tensor(EFFECT[key](changed)), torch.as_tensor(EFFECT[key](cfg)))
    if cfg.steps > 0:
        assert marked["epochs"] == "overridden by steps"
        budgetless = config.with_overrides(cfg, ["steps=0"])
        assert plan(config.with_overrides(budgetless, ["epochs=7"])) != plan(budgetless)
    switched_on = config.with_overrides(cfg, ["augment.specaugment=true"])
    assert "augment.freq_mask" not in not_in_effect(switched_on)
    masked = config.with_overrides(switched_on, ["augment.freq_mask=7"])
    assert not torch.equal(views(masked), views(switched_on))
