"""Processes doing the same work at the same moment: one feature cache, one run, one sweep.

Each used to corrupt the other silently (a feature file twice its size, results from a corrupt
cache, duplicate result rows). Each race is repeated: 10 rounds for the cache, fewer for the
slower run and sweep races; ACLAUDIO_RACE_ROUNDS=N runs every race N times (a stress run).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import torch

from aclaudio.data import datasets, synth
from aclaudio.data.cache import FeatureCache, build_cache
from aclaudio.recipes import sweep
from aclaudio.training import config, results


def rounds(default: int) -> int:
    return int(os.environ.get("ACLAUDIO_RACE_ROUNDS", default))


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("smoke")
    synth.synthesize(root, profile="smoke", seed=0, progress=False)
    return root


def fresh_copy(data: Path, to: Path) -> Path:
    """The dataset without any feature cache (copied, so the files' mtimes are kept)."""
    shutil.copytree(data, to, ignore=shutil.ignore_patterns(".aclaudio-cache"))
    return to


def cache_digest(cache: FeatureCache) -> str:
    digest = hashlib.sha256()
    for name in ("features.f16", "clips.csv", "bad_files.csv"):
        digest.update((cache.path / name).read_bytes())
    return digest.hexdigest()


def _build_rounds(data_dir: str, cache_root: str, rounds: int, barrier) -> list[str]:
    dataset = datasets.load_dataset(data_dir)
    digests = []
    for k in range(rounds):
        barrier.wait()  # all builders start each round together
        cache = build_cache(
            dataset, "cpu", cache_dir=Path(cache_root) / str(k), workers=1, progress=False
        )
        digests.append(cache_digest(cache))
    return digests


def test_four_builders_of_one_fresh_cache_get_a_single_builds_bytes(smoke_data, tmp_path):
    reference = build_cache(
        datasets.load_dataset(smoke_data), "cpu", cache_dir=tmp_path / "single", progress=False
    )
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(4, mp_context=context) as pool:
        barrier = manager.Barrier(4, timeout=300)  # a crashed builder fails the others
        jobs = [
            pool.submit(_build_rounds, str(smoke_data), str(tmp_path), rounds(10), barrier)
            for _ in range(4)
        ]
        results = [job.result(timeout=600) for job in jobs]
    assert results == [[cache_digest(reference)] * rounds(10)] * 4


def test_a_damaged_cache_is_rebuilt_with_a_message(tiny_dataset, tmp_path, capsys):
    dataset = datasets.load_dataset(tiny_dataset)
    first = build_cache(dataset, "cpu", cache_dir=tmp_path, progress=False)
    good = cache_digest(first)
    with open(first.path / "features.f16", "ab") as handle:
        handle.write(b"\x01" * 960)  # what two builders appending to one file left behind
    again = build_cache(dataset, "cpu", cache_dir=tmp_path, progress=False)
    assert "is damaged: features.f16 has" in capsys.readouterr().err
    assert cache_digest(again) == good


PRETRAIN = [
    sys.executable,
    "-m",
    "aclaudio.cli",
    "pretrain",
    "--profile",
    "smoke",
    "--set",
    "subset=all",
    "--set",
    "epochs=2",
]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "last.pt", weights_only=True)["model"]


def test_two_processes_asked_for_one_run_train_it_once(smoke_data, tmp_path):
    reference = subprocess.run(
        PRETRAIN + ["--data-dir", smoke_data, "--runs-dir", tmp_path / "single"],
        capture_output=True,
        text=True,
    )
    assert reference.returncode == 0, reference.stderr[-2000:]
    (single,) = (tmp_path / "single").glob("pretrain-*")
    for k in range(rounds(3)):
        data = fresh_copy(smoke_data, tmp_path / f"data{k}")  # the cache is built in the race
        store = tmp_path / f"store{k}"
        command = PRETRAIN + ["--data-dir", data, "--runs-dir", store]
        both = [
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outputs = [process.communicate(timeout=600) for process in both]
        for process, (out, err) in zip(both, outputs, strict=True):
            assert process.returncode == 0, err[-2000:]
            assert json.loads(out.strip().splitlines()[-1])["ok"]
        assert any("busy in another process: waiting" in err for _, err in outputs)
        (run_dir,) = store.glob("pretrain-*")
        table = results.load_results(store)
        assert len(table) == 1 and table["run"].tolist() == [run_dir.name]
        weights, expected = final_weights(run_dir), final_weights(single)
        assert all(torch.equal(weights[name], expected[name]) for name in expected)
        assert not list(run_dir.glob("*.tmp")) and not list(run_dir.glob(".*.tmp"))


def test_a_run_killed_between_its_row_and_its_marker_keeps_one_row(smoke_data, tmp_path):
    base = config.profile_config(
        "pretrain", "smoke", data_dir=str(smoke_data), subset="all", epochs=1
    )
    run = sweep.run_grid([base], runs_dir=tmp_path)[0]
    (run.path / "finished.json").unlink()  # as if killed right after the results row
    sweep.run_grid([base], runs_dir=tmp_path)
    table = results.load_results(tmp_path)
    assert table["run"].tolist() == [run.id] and run.finished


def test_local_sweep_on_fresh_data_in_parallel(smoke_data, tmp_path):
    for k in range(rounds(2)):
        data = fresh_copy(smoke_data, tmp_path / f"data{k}")
        configs = [
            config.profile_config(
                "pretrain", "smoke", data_dir=str(data), subset="all", epochs=1, alpha=alpha
            )
            for alpha in (0.3, 0.7, 1.0)
        ]
        store = tmp_path / f"store{k}"
        done = sweep.run_grid(configs, runs_dir=store, executor="local", parallel=3)
        table = results.load_results(store)
        assert sorted(table["run"]) == sorted(run.id for run in done)
        # a corrupt cache scores chance (1 in 20); the smoke runs score about 0.2 on the harder data
        assert (table["test_micro"] > 0.1).all(), table["test_micro"].tolist()
